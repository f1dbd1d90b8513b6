"""Detections and the face crops the classifier sees, framed the way FER+ faces were.

FER+ faces are tight 48x48 crops with a margin of their own; a detector's box frames a face
differently (BlazeFace's box is tighter, Haar's looser). Each detector carries a
:class:`CropMapping` (measured by ``fer-edge bench detect --calibrate`` on FER+ faces pasted on a
larger canvas, stored in the detector's metadata) that turns its box into the square region a
FER+ crop would have covered (or, where the metadata chooses it, a keypoint template places it:
``edge.detect.framing``). The region is levelled by the eye line when the detector gives eyes,
``align`` is on and the roll reaches the metadata's ``min_roll``; ``face_crop`` cuts it and pads
with the edge pixels where it leaves the frame.

Python 3.6 compatible (device code).
"""

import collections
import math

import cv2
import numpy as np

# box: (x, y, w, h) ints in frame pixels (what events report); score: 0..1;
# crop: (cx, cy, side, angle_degrees) floats, the classifier's square region, or None (the box);
# keypoints: [(x, y), ...] in frame pixels (BlazeFace: right eye, left eye, nose, mouth, ears) or None.
Detection = collections.namedtuple("Detection", "box score crop keypoints")
Detection.__new__.__defaults__ = (None, None)


class CropMapping(collections.namedtuple("CropMapping", "scale shift_x shift_y")):
    """Box -> FER crop: a square of side ``scale`` x the box's mean side, centred ``shift_x``
    box widths right and ``shift_y`` box heights down of the box centre."""

    @classmethod
    def from_meta(cls, crop):
        return cls(float(crop["scale"]), float(crop["shift_x"]), float(crop["shift_y"]))

    def as_dict(self):
        return {"scale": round(self.scale, 4), "shift_x": round(self.shift_x, 4), "shift_y": round(self.shift_y, 4)}

    def region(self, box, angle=0.0):
        """(cx, cy, side, angle) of the crop for a box (x, y, w, h) (float pixels)."""
        x, y, w, h = [float(v) for v in box]
        side = self.scale * (w + h) / 2.0
        return (x + w / 2.0 + self.shift_x * w, y + h / 2.0 + self.shift_y * h, side, float(angle))


IDENTITY = CropMapping(1.0, 0.0, 0.0)


def eye_angle(keypoints):
    """Roll of the head in degrees from the two eye keypoints (0: level)."""
    (rx, ry), (lx, ly) = keypoints[0], keypoints[1]
    # In the image the subject's right eye is on the left; angle of the left->right eye line.
    if lx < rx:
        (rx, ry), (lx, ly) = (lx, ly), (rx, ry)
    return math.degrees(math.atan2(ly - ry, lx - rx))


def box_slice(image, box):
    """The box's pixels (no copy), clipped to the frame."""
    x, y, w, h = [int(v) for v in box]
    return image[max(0, y) : max(0, y + h), max(0, x) : max(0, x + w)]


# The crop region is snapped to a grid before cutting (1/64 px for the centre and side, 1/100 degree for
# the angle): far below what changes a face's emotion, and it makes two implementations of the pipeline
# (Python here, the browser app's framing.js) cut the same pixels when their detectors' float outputs
# differ in the last digits (otherwise OpenCV's fixed-point warp moves some pixels by one grey level).
REGION_GRID = 64.0
ANGLE_GRID = 100.0


def snap_region(region):
    """(cx, cy, side, angle) snapped to the grid (round half up, as the browser app does)."""
    cx, cy, side, angle = [float(v) for v in region]
    return (
        math.floor(cx * REGION_GRID + 0.5) / REGION_GRID,
        math.floor(cy * REGION_GRID + 0.5) / REGION_GRID,
        math.floor(side * REGION_GRID + 0.5) / REGION_GRID,
        math.floor(angle * ANGLE_GRID + 0.5) / ANGLE_GRID,
    )


def face_crop(image, det, size=None):
    """The classifier's crop of a detection: ``det.crop`` (rotated by its angle, edge-padded) or,
    when a detector gives no crop region, the box itself. ``size``: output side (default: the
    region's own size, so the classifier's resize rule applies as in training)."""
    if not isinstance(det, Detection):  # a plain (x, y, w, h) box
        return box_slice(image, det)
    region = det.crop
    if region is None:
        return box_slice(image, det.box)
    cx, cy, side, angle = snap_region(region)
    out = int(size or max(1, int(round(side))))
    if not angle:
        x0, y0 = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
        s = int(round(side))
        h, w = image.shape[:2]
        if x0 >= 0 and y0 >= 0 and x0 + s <= w and y0 + s <= h and (size is None or size == s):
            return image[y0 : y0 + s, x0 : x0 + s]
    scale = out / float(side)
    matrix = cv2.getRotationMatrix2D((float(cx), float(cy)), float(angle), scale)
    matrix[0, 2] += out / 2.0 - cx
    matrix[1, 2] += out / 2.0 - cy
    interp = cv2.INTER_AREA if scale < 1.0 and not angle else cv2.INTER_LINEAR
    return cv2.warpAffine(image, matrix, (out, out), flags=interp, borderMode=cv2.BORDER_REPLICATE)


def clip_xywh(box, width, height):
    """An (x, y, w, h) box rounded to ints and clipped to a width x height frame."""
    x, y, w, h = [int(round(v)) for v in box]
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(width, x + w), min(height, y + h)
    return (x0, y0, max(0, x1 - x0), max(0, y1 - y0))


def clip_box(box, width, height):
    x0, y0, x1, y1 = box
    x0, y0 = max(0, int(round(x0))), max(0, int(round(y0)))
    x1, y1 = min(int(width), int(round(x1))), min(int(height), int(round(y1)))
    return (x0, y0, max(0, x1 - x0), max(0, y1 - y0))


def as_points(points):
    return [(float(p[0]), float(p[1])) for p in np.asarray(points).reshape(-1, 2)]
