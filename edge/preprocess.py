"""The one face preprocessing, driven by model metadata.

Training (validation faces and the geometry of augmentation), every converter's parity check
and every agent call these functions, so a face reaches the model the same way everywhere:

1. to grayscale (OpenCV's BGR->GRAY weights) when the crop has colour;
2. resized to the metadata's input height x width: INTER_AREA when shrinking, INTER_LINEAR
   when enlarging (``resize: area-down-linear-up``);
3. float32 in [0, 255]; normalisation (x * scale + offset) happens inside the model unless the
   metadata says ``normalization.in_model: false``;
4. stacked into a batch in the metadata's layout (NHWC or NCHW).

Python 3.6 compatible (device code).
"""

import cv2
import numpy as np


class PreprocessError(ValueError):
    """A face crop that cannot be preprocessed (wrong dtype, shape or empty)."""


def to_gray(image):
    """uint8 image HxW, HxWx1 or HxWx3 (BGR) -> uint8 HxW."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise PreprocessError("expected a uint8 image, got dtype {}".format(image.dtype))
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise PreprocessError("expected an image of shape HxW or HxWx(1|3|4), got {}".format(image.shape))


def interpolation(src_hw, dst_hw):
    """The interpolation the metadata's ``area-down-linear-up`` rule picks for a resize."""
    if dst_hw[0] < src_hw[0] or dst_hw[1] < src_hw[1]:
        return cv2.INTER_AREA
    return cv2.INTER_LINEAR


def resize_face(gray, height, width):
    """Resize one uint8 gray face to height x width by the metadata's rule."""
    if gray.size == 0:
        raise PreprocessError("empty face crop")
    if gray.shape[:2] == (height, width):
        return gray
    return cv2.resize(gray, (width, height), interpolation=interpolation(gray.shape[:2], (height, width)))


def prepare_faces(faces, meta):
    """Face crops (uint8, any size, gray or BGR; a list or an array [N, H, W]) -> model input.

    Returns float32 [N, C, H, W] or [N, H, W, C] following ``meta['input']['layout']``.
    """
    inp = meta["input"]
    height, width = inp["height"], inp["width"]
    batch = np.empty((len(faces), height, width), dtype=np.float32)
    for i, face in enumerate(faces):
        batch[i] = resize_face(to_gray(face), height, width)
    norm = meta["normalization"]
    if not norm["in_model"]:
        batch = batch * np.float32(norm["scale"]) + np.float32(norm["offset"])
    if inp["layout"] == "NCHW":
        return batch[:, None, :, :]
    return batch[:, :, :, None]
