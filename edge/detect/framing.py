"""Keypoint framing: the classifier's square from a face's keypoints, placed like FER+ Train faces.

A detector that gives keypoints (BlazeFace: eyes, nose tip, mouth, ear tragions) carries a
*template*: where those keypoints lie, on median, inside a FER+ Train face, in units of the
48x48 crop (0..1 across, 0..1 down), measured by ``fer-edge bench detect --calibrate`` and stored
in the detector's metadata (``detector.crop.keypoints`` and ``.template``; ``detector.crop.framing``
says which framing the detector uses: ``box``, the box mapping, or ``keypoints``, this one). A least-squares
similarity transform (Umeyama) maps the template onto a detection's keypoints; the unit square
under it is the crop: ``(cx, cy, side, angle)``, the same region ``edge.detect.crops.face_crop``
cuts for the box mapping, rolled by the fitted angle (``rotate``: the detector's ``align``) or upright
(scale and shift only).

Numpy only, Python 3.6 compatible (device code).
"""

import collections
import math

import numpy as np

# BlazeFace's keypoints, in the order of its regressors (also the metadata's detector.keypoints).
BLAZEFACE_KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear_tragion", "left_ear_tragion")


def similarity(src, dst, rotate=True):
    """Least-squares similarity ``dst ~ s * R @ src + t`` (Umeyama 1991) of two [N, 2] point sets.

    Returns (s, theta radians, t (2,)); theta 0 when ``rotate`` is false. None when the source
    points are degenerate (all at one place)."""
    src = np.asarray(src, np.float64).reshape(-1, 2)
    dst = np.asarray(dst, np.float64).reshape(-1, 2)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_d
    var_s = float((a**2).sum()) / len(src)
    if var_s <= 1e-12:
        return None
    if rotate:
        cov = b.T.dot(a) / len(src)
        u, d, vt = np.linalg.svd(cov)
        sign = np.ones(2)
        if np.linalg.det(u) * np.linalg.det(vt) < 0:
            sign[1] = -1.0
        rot = u.dot(np.diag(sign)).dot(vt)
        scale = float((d * sign).sum()) / var_s
        theta = math.atan2(rot[1, 0], rot[0, 0])
    else:
        scale = float((a * b).sum()) / float((a**2).sum())
        theta, rot = 0.0, np.eye(2)
    t = mu_d - scale * rot.dot(mu_s)
    return scale, theta, t


class KeypointFraming(collections.namedtuple("KeypointFraming", "indices template")):
    """``indices``: which of the detector's keypoints; ``template``: their places in the FER crop
    (units of its side, ((u, v), ...))."""

    @classmethod
    def from_meta(cls, crop, names=BLAZEFACE_KEYPOINTS):
        """The framing of a detector's ``crop`` metadata, or None when it has no template (box mapping).
        ``edge.metadata`` has checked the fields; ``names`` are the detector's keypoints in order."""
        if "template" not in crop:
            return None
        names = list(names)
        indices = tuple(names.index(k) for k in crop["keypoints"])
        template = tuple((float(u), float(v)) for u, v in crop["template"])
        return cls(indices, template)

    def as_dict(self, names=BLAZEFACE_KEYPOINTS):
        """The metadata fields (``crop.keypoints``, ``crop.template``) of this framing."""
        return {
            "keypoints": [names[i] for i in self.indices],
            "template": [[round(u, 4), round(v, 4)] for u, v in self.template],
        }

    def region(self, keypoints, rotate=True):
        """(cx, cy, side, angle degrees) of the crop for a detection's keypoints (frame pixels), or
        None when they are missing or degenerate (the caller falls back to the box mapping).
        ``rotate`` false: an upright crop (angle 0) fitted on scale and shift only."""
        if keypoints is None or len(keypoints) <= max(self.indices):
            return None
        points = np.asarray([keypoints[i] for i in self.indices], np.float64)
        if not np.all(np.isfinite(points)):
            return None
        fit = similarity(self.template, points, rotate)
        if fit is None or not fit[0] > 0:
            return None
        scale, theta, t = fit
        c, s = math.cos(theta), math.sin(theta)
        cx = scale * (c * 0.5 - s * 0.5) + t[0]
        cy = scale * (s * 0.5 + c * 0.5) + t[1]
        return (float(cx), float(cy), float(scale), math.degrees(theta))
