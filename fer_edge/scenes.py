"""Scenes with ground truth for the detector benchmark: FER+ Valid faces pasted on backgrounds.

Each scene is a frame (BGR uint8) and its faces: the pasted square (where the FER+ crop lies, so
the box -> FER crop mapping can be measured), the face's majority label and its roll. Faces are
blended in with a soft edge so the paste border is not a free cue; backgrounds are scikit-image's
photographs (public domain), tiled and toned to gray like the faces. Deterministic for a seed.

Kinds: ``near`` (640x480, 2 faces 120-200 px), ``far`` (1280x720, 4 faces 40-100 px), ``tilted``
(near, each face rolled by 15-30 degrees either way), ``calibrate`` (640x480, 1 face 100-200 px,
upright: to measure the crop mapping). ``match`` pairs a frame's detections with its true faces.
"""

import collections
from typing import Sequence, TypedDict

import cv2
import numpy as np

from edge.tracking.track import iou as box_iou  # the tracker's IoU of (x, y, w, h) boxes

Face = collections.namedtuple("Face", "box label angle")  # box: (x, y, side, side) of the FER crop
Scene = collections.namedtuple("Scene", "kind image faces")
IOU = 0.3  # a detection matches a true face at this IoU or more


def match(truth: Sequence[Face], boxes: Sequence[Sequence[float]], threshold: float = IOU) -> dict[int, int]:
    """Greedy one-to-one matching by IoU: {truth index: detection index}."""
    pairs = sorted(((box_iou(t.box, b), i, j) for i, t in enumerate(truth) for j, b in enumerate(boxes)), reverse=True)
    used_t, used_d, out = set(), set(), {}
    for value, i, j in pairs:
        if value < threshold or i in used_t or j in used_d:
            continue
        out[i] = j
        used_t.add(i)
        used_d.add(j)
    return out


class SceneKind(TypedDict):
    size: tuple[int, int]  # (width, height)
    faces: int
    side: tuple[int, int]  # the faces' side in pixels, from..to
    angle: int  # the largest roll in degrees (0: upright)


KINDS: dict[str, SceneKind] = {
    "near": {"size": (640, 480), "faces": 2, "side": (120, 200), "angle": 0},
    "far": {"size": (1280, 720), "faces": 4, "side": (40, 100), "angle": 0},
    "tilted": {"size": (640, 480), "faces": 2, "side": (120, 200), "angle": 30},
    "calibrate": {"size": (640, 480), "faces": 1, "side": (100, 200), "angle": 0},
}


def backgrounds() -> list[np.ndarray]:
    """Gray photographs from scikit-image without faces (not "camera": the cameraman is one), as BGR."""
    from skimage import data

    images = [
        data.coffee(),
        data.rocket(),
        data.chelsea(),
        data.immunohistochemistry(),
        data.hubble_deep_field(),
        np.dstack([data.brick()] * 3),
        np.dstack([data.grass()] * 3),
        np.dstack([data.gravel()] * 3),
    ]
    out = []
    for img in images:
        gray = cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2GRAY)
        out.append(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    return out


def _background(pool, width, height, rng):
    img = pool[rng.integers(len(pool))]
    scale = max(width / float(img.shape[1]), height / float(img.shape[0])) * rng.uniform(1.0, 1.6)
    big = cv2.resize(img, (int(img.shape[1] * scale) + 1, int(img.shape[0] * scale) + 1))
    x = rng.integers(0, big.shape[1] - width + 1)
    y = rng.integers(0, big.shape[0] - height + 1)
    return big[y : y + height, x : x + width].copy()


def _soft_mask(side, feather=0.12):
    ramp = np.clip(np.minimum(np.arange(side), np.arange(side)[::-1]) / max(1.0, feather * side), 0, 1)
    return np.outer(ramp, ramp).astype(np.float32)


def _paste(canvas, face, x, y, side, angle):
    """Blend a gray face (resized to ``side``, rolled by ``angle``) with its top-left at (x, y)."""
    patch = cv2.resize(face, (side, side), interpolation=cv2.INTER_LINEAR if side > face.shape[0] else cv2.INTER_AREA)
    mask = _soft_mask(side)
    if angle:
        pad = int(side * 0.25)
        big = cv2.copyMakeBorder(patch, pad, pad, pad, pad, cv2.BORDER_REFLECT)
        bigmask = cv2.copyMakeBorder(mask, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        c = big.shape[0] / 2.0
        m = cv2.getRotationMatrix2D((c, c), angle, 1.0)
        big = cv2.warpAffine(big, m, big.shape[:2][::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        bigmask = cv2.warpAffine(bigmask, m, bigmask.shape[:2][::-1], flags=cv2.INTER_LINEAR)
        patch, mask, x, y = big, bigmask, x - pad, y - pad
    h, w = patch.shape[:2]
    region = canvas[y : y + h, x : x + w].astype(np.float32)
    blended = region * (1 - mask[..., None]) + patch[..., None].astype(np.float32) * mask[..., None]
    canvas[y : y + h, x : x + w] = np.clip(blended, 0, 255).astype(np.uint8)


def _overlaps(box, boxes, margin):
    x, y, s, _ = box
    for bx, by, bs, _ in boxes:
        if x < bx + bs + margin and bx < x + s + margin and y < by + bs + margin and by < y + s + margin:
            return True
    return False


def make_scenes(
    kind: str, count: int, faces: np.ndarray, labels: np.ndarray, seed: int = 0, pool: list[np.ndarray] | None = None
) -> list[Scene]:
    """``count`` scenes of ``kind`` built from FER+ faces (uint8 [N, 48, 48]) and their labels."""
    spec = KINDS[kind]
    rng = np.random.default_rng(seed)
    pool = pool or backgrounds()
    width, height = spec["size"]
    scenes = []
    for _ in range(count):
        canvas = _background(pool, width, height, rng)
        truth: list[Face] = []
        for _ in range(spec["faces"]):
            for _attempt in range(50):
                side = int(rng.integers(spec["side"][0], spec["side"][1] + 1))
                margin = int(side * 0.3) if spec["angle"] else 4
                x = int(rng.integers(margin, width - side - margin))
                y = int(rng.integers(margin, height - side - margin))
                if not _overlaps((x, y, side, side), [f.box for f in truth], int(0.3 * side)):
                    break
            else:
                continue
            angle = 0.0
            if spec["angle"]:
                angle = float(rng.uniform(15, spec["angle"])) * (1 if rng.random() < 0.5 else -1)
            index = int(rng.integers(len(faces)))
            _paste(canvas, faces[index], x, y, side, angle)
            truth.append(Face((x, y, side, side), int(labels[index]), angle))
        scenes.append(Scene(kind, canvas, truth))
    return scenes


def astronaut_scene() -> Scene:
    """scikit-image's astronaut photograph (a real face; public domain, NASA) with its face box,
    marked by hand as the square a FER+ crop would take (forehead to chin, ear to ear). No label."""
    from skimage import data

    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    return Scene("photo", image, [Face((168, 60, 120, 120), -1, 0.0)])
