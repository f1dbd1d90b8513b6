"""`fer-edge bench detect --calibrate`: each detector's box -> FER crop mapping, measured on FER+ Valid
faces pasted upright on photographs (medians over the faces it found), written to
``models/crop_mapping.json`` for ``make detector-models`` (the keypoint template comes from
``fer_edge.bench_framing``)."""

import json
import os
import statistics
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .scenes import Scene, match

if TYPE_CHECKING:
    from edge.detect.base import FaceDetector

CALIBRATED = ("blazeface-back", "blazeface-short", "haar")
CROP_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models", "crop_mapping.json")


def calibrate(
    detectors: Sequence[tuple[str, "FaceDetector"]], scenes: Sequence[Scene], log: Callable[[str], None] = print
) -> dict[str, dict[str, Any]]:
    """Box -> FER crop mapping of each detector: medians over faces it found (upright scenes)."""
    out = {}
    for label, det in detectors:
        scale, dx, dy = [], [], []
        for scene in scenes:
            dets = det.detect(scene.image)
            for i, j in match(scene.faces, [d.box for d in dets]).items():
                tx, ty, ts, _ = scene.faces[i].box
                bx, by, bw, bh = [float(v) for v in dets[j].box]
                if bx <= 0 or by <= 0 or bx + bw >= scene.image.shape[1] or by + bh >= scene.image.shape[0]:
                    continue  # clipped by the frame edge
                scale.append(ts / ((bw + bh) / 2.0))
                dx.append((tx + ts / 2.0 - (bx + bw / 2.0)) / bw)
                dy.append((ty + ts / 2.0 - (by + bh / 2.0)) / bh)
        if not scale:
            log("calibrate {}: no face found".format(label))
            continue
        out[label] = {
            "crop": {
                "scale": round(statistics.median(scale), 4),
                "shift_x": round(statistics.median(dx), 4),
                "shift_y": round(statistics.median(dy), 4),
            },
            "faces": len(scale),
            "iqr_scale": [round(float(np.percentile(scale, 25)), 3), round(float(np.percentile(scale, 75)), 3)],
        }
        log("calibrate {}: {} on {} faces".format(label, out[label]["crop"], len(scale)))
    return out


def write_calibration(mapping: dict[str, dict[str, Any]], path: str, report: dict[str, Any]) -> str:
    """The measured mappings as ``models/crop_mapping.json`` (read by ``make detector-models``)."""
    from edge.detect.factory import NEURAL

    doc = {
        "about": "box -> FER+ crop mapping per detector, measured by `fer-edge bench detect --calibrate` on "
        "FER2013Valid faces pasted upright on photographs (median over the faces found; an entry not measured "
        "in a run is kept from the file); keypoints/template: "
        "where those keypoints lie in the FER crop (units of its side), median over FER2013Train faces pasted "
        "the same way (edge.detect.framing)",
        "machine": report["machine"],
        "seed": report["seed"],
        "min_face": report["min_face"],
        "models": dict((NEURAL.get(kind, kind), value) for kind, value in mapping.items()),
    }
    if os.path.isfile(path):  # models not measured this time (not shipped here) keep their entries
        with open(path) as f:
            kept = json.load(f).get("models", {})
        for name, value in kept.items():
            doc["models"].setdefault(name, value)
    with open(path, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
    return path
