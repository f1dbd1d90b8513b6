"""Helpers for tests that build small FER+ data of their own (importable as `fer_testdata`)."""

from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def write_ferplus_folder(root, data, per_split):
    """A FERPlus-layout folder with the first ``per_split[split]`` faces of each split."""
    root = Path(root)
    for split, n in per_split.items():
        part = data.split(split)
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for img, votes, name in zip(part.images[:n], part.votes[:n], part.names[:n]):
            cv2.imwrite(str(folder / name), img)
            lines.append('{},"(0, 0, 48, 48)",{}'.format(name, ",".join(str(int(v)) for v in votes)))
        (folder / "label.csv").write_text("\n".join(lines) + "\n")
    return root


def synthetic_faces(count, seed):
    """uint8 stand-in faces [count, 48, 48]: smooth blobs plus noise. For paths that must run
    without the FER+ data; parity checks that count use real faces too."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:48]
    faces = []
    for _ in range(count):
        cy, cx, s = rng.uniform(12, 36), rng.uniform(12, 36), rng.uniform(6, 20)
        blob = 200 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        faces.append(np.clip(blob + rng.normal(40, 25, (48, 48)), 0, 255))
    return np.array(faces, dtype=np.uint8)
