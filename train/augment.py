"""The FER+ paper's on-the-fly augmentation (FERPlus reference ``img_util.distort_img``).

Random affine per face: shift up to 8% of the output size, scale up to 1.05 (or its inverse) per
axis, rotation up to 20 degrees, skew up to 0.05, horizontal flip with probability 1/2. The warp
maps the 48x48 face onto the model's input size directly (bilinear), the same geometry as the
un-augmented path ``edge.preprocess.resize_face`` when all parameters are zero.
"""

import math

import cv2
import numpy as np

MAX_SHIFT = 0.08
MAX_SCALE = 1.05
MAX_ANGLE = 20.0
MAX_SKEW = 0.05


def random_affine(
    rng: np.random.Generator,
    out_h: int,
    out_w: int,
    in_h: int,
    in_w: int,
    max_shift: float = MAX_SHIFT,
    max_scale: float = MAX_SCALE,
    max_angle: float = MAX_ANGLE,
    max_skew: float = MAX_SKEW,
) -> np.ndarray:
    """A 2x3 matrix mapping output pixel coordinates to input coordinates."""
    shift_y = out_h * max_shift * rng.uniform(-1.0, 1.0)
    shift_x = out_w * max_shift * rng.uniform(-1.0, 1.0)
    angle = math.radians(max_angle * rng.uniform(-1.0, 1.0))
    skew_y = max_skew * rng.uniform(-1.0, 1.0)
    skew_x = max_skew * rng.uniform(-1.0, 1.0)
    scale_y = rng.uniform(1.0, max_scale)
    scale_y = 1.0 / scale_y if rng.random() < 0.5 else scale_y
    scale_x = rng.uniform(1.0, max_scale)
    scale_x = 1.0 / scale_x if rng.random() < 0.5 else scale_x
    # forward map (input -> output) around the centres: resize, scale, skew, rotate, shift
    fit = np.diag([out_w / float(in_w), out_h / float(in_h)])
    scale = np.diag([scale_x, scale_y])
    skew = np.array([[1.0, skew_x], [skew_y, 1.0]])
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    forward = rot @ skew @ scale @ fit
    inverse = np.linalg.inv(forward)
    out_c = np.array([(out_w - 1) / 2.0 + shift_x, (out_h - 1) / 2.0 + shift_y])
    in_c = np.array([(in_w - 1) / 2.0, (in_h - 1) / 2.0])
    offset = in_c - inverse @ out_c
    return np.hstack([inverse, offset[:, None]])


def augment_batch(
    faces: np.ndarray,
    out_h: int,
    out_w: int,
    rng: np.random.Generator,
    flip: bool = True,
    max_scale: float = MAX_SCALE,
    max_shift: float = MAX_SHIFT,
) -> np.ndarray:
    """uint8 faces [N, h, w] -> float32 [N, out_h, out_w] randomly distorted (the paper's recipe; a wider
    ``max_scale``/``max_shift`` frames the faces as loosely as a face detector's crops)."""
    n, in_h, in_w = faces.shape
    out = np.empty((n, out_h, out_w), dtype=np.float32)
    for i in range(n):
        m = random_affine(rng, out_h, out_w, in_h, in_w, max_shift=max_shift, max_scale=max_scale)
        warped = cv2.warpAffine(
            faces[i], m, (out_w, out_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
        )
        if flip and rng.random() < 0.5:
            warped = warped[:, ::-1]
        out[i] = warped
    return out
