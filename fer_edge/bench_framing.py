"""Framing for `fer-edge bench detect`: the keypoint template and the framing loss.

- :func:`measure_template`: where a detector's keypoints lie inside FER+ faces, in units of the
  48x48 crop (medians over the faces found on upright scenes of FER+ **Train** faces); written by
  ``--calibrate`` into ``models/crop_mapping.json`` beside the box mapping, and from there into the
  detector's metadata (``edge.detect.framing``).
- :func:`framing`: on the faces a detector matched, the classifier's accuracy on squares cut at the
  true face positions minus its accuracy on the detector's crops (the framing loss, in points),
  and the spread of the crop's side around the true square's.
"""

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .scenes import Face, Scene, match

if TYPE_CHECKING:
    from edge.classifier import EmotionClassifier
    from edge.detect.base import FaceDetector
    from edge.detect.crops import Detection

# The keypoints the template uses, chosen by `fer-edge bench detect` on FER+ Valid scenes
# (docs/experiments/2026-12-07-keypoint-framing.md); the ear tragions are the least stable.
TEMPLATE_KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth")
# The framing the shipped detectors use (their metadata's crop.framing), chosen the same way.
FRAMING = "box"
# Faces rolled less than this many degrees are cut upright (crop.min_roll): the eye line of a small
# face is noisy, levelling by it cost accuracy on far faces and changed nothing on near ones.
MIN_ROLL = 10.0
# The framing loss is reported on at least this many matched, labelled faces.
MIN_FACES = 20


def true_region(face: Face) -> tuple[float, float, float, float]:
    """The (cx, cy, side, angle) crop of a pasted face's true square: the FER+ crop itself, unrolled.
    (``scenes._paste`` rolls the face by ``angle`` with OpenCV's convention; ``face_crop`` undoes a
    roll of ``-angle`` in its own.)"""
    x, y, side, _ = face.box
    return (x + side / 2.0, y + side / 2.0, float(side), -float(face.angle))


def measure_template(
    detector: "FaceDetector", scenes: Sequence[Scene], keypoints: Sequence[str] = TEMPLATE_KEYPOINTS
) -> dict[str, Any] | None:
    """Median place of ``keypoints`` in the FER crop ([u, v], units of its side) over the upright
    faces ``detector`` matched in ``scenes``; None when it found none (or gives no keypoints)."""
    from edge.detect.framing import BLAZEFACE_KEYPOINTS

    indices = [BLAZEFACE_KEYPOINTS.index(k) for k in keypoints]
    points = []
    for scene in scenes:
        dets = detector.detect(scene.image)
        for i, j in match(scene.faces, [d.box for d in dets]).items():
            kp = dets[j].keypoints
            if not kp or len(kp) <= max(indices):
                continue
            x, y, side, _ = scene.faces[i].box
            points.append([((kp[k][0] - x) / side, (kp[k][1] - y) / side) for k in indices])
    if not points:
        return None
    arr = np.asarray(points, np.float64)
    iqr = np.percentile(arr, 75, axis=0) - np.percentile(arr, 25, axis=0)
    return {
        "keypoints": list(keypoints),
        "template": [[round(float(u), 4), round(float(v), 4)] for u, v in np.median(arr, axis=0)],
        "faces": len(points),
        "iqr": [[round(float(u), 4), round(float(v), 4)] for u, v in iqr],
    }


def framing(
    classifier: "EmotionClassifier", image: np.ndarray, matched: Sequence[tuple[Face, "Detection"]]
) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
    """For matched (truth, detection) pairs: the classifier's probabilities on the true squares and
    each crop's :func:`offsets` (the box itself where the detection has no crop region)."""
    from edge.detect.crops import Detection, face_crop

    crops = [face_crop(image, Detection(f.box, 1.0, true_region(f), None)) for f, _ in matched]
    return list(classifier.predict(crops)), [offsets(f, d) for f, d in matched]


def offsets(face: Face, det: "Detection") -> tuple[float, float]:
    """(crop side / true side, larger centre offset / true side) of a detection's crop."""
    x, y, side, _ = face.box
    if det.crop:
        cx, cy, crop_side = det.crop[0], det.crop[1], det.crop[2]
    else:
        bx, by, bw, bh = det.box
        cx, cy, crop_side = bx + bw / 2.0, by + bh / 2.0, (bw + bh) / 2.0
    shift = max(abs(cx - (x + side / 2.0)), abs(cy - (y + side / 2.0)))
    return crop_side / float(side), shift / float(side)


def summary(
    true_correct: int, correct: int, labelled_found: int, offs: Sequence[tuple[float, float]]
) -> dict[str, Any]:
    """The framing loss (points), the crop side's interquartile range over the true side and the
    median and 75th percentile of the centre's offset (units of the true side); nothing on fewer
    than ``MIN_FACES`` faces."""
    if labelled_found < MIN_FACES:  # a handful of faces says nothing about framing
        return {}
    ratios, shifts = [o[0] for o in offs], [o[1] for o in offs]
    return {
        "framing_loss": 100.0 * (true_correct - correct) / float(labelled_found),
        "accuracy_true_squares": true_correct / float(labelled_found),
        "side_iqr": [round(float(np.percentile(ratios, 25)), 3), round(float(np.percentile(ratios, 75)), 3)],
        "shift_p50_p75": [round(float(np.percentile(shifts, 50)), 3), round(float(np.percentile(shifts, 75)), 3)],
    }
