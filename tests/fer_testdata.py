"""Helpers for tests that build small FER+ data of their own (importable as `fer_testdata`)."""

from pathlib import Path

import cv2

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
