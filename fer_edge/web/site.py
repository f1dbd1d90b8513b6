"""The in-browser app as files: the page, its modules, the vendored runtime, the two ONNX models and
``config.json``, the constants the JavaScript needs, taken from the loaded Python pipeline (its detector's
and classifier's metadata and options) so nothing is copied by hand."""

import json
import os
from typing import Any

from edge.detect import blazeface, schedule, tiling
from edge.detect.crops import ANGLE_GRID, REGION_GRID
from edge.detect.ssd import RAW_SCORE_LIMIT

from .vendor import STATIC_DIR, vendor_files

DETECTOR_FILE = "models/detector.onnx"
CLASSIFIER_FILE = "models/classifier.onnx"
PAGE = "index.html"
BASE_MARKER = "<!--base-->"


class NotInBrowser(ValueError):
    """A pipeline the browser app cannot run (a detector that is not a neural one)."""


def neural_detector(pipeline: Any) -> Any:
    """The pipeline's detector when the browser can run it (a neural one), else NotInBrowser."""
    from edge.detect.blazeface import NeuralFaceDetector

    if not isinstance(pipeline.detector, NeuralFaceDetector):
        raise NotInBrowser(
            "the browser app runs the neural detectors (blazeface-*), not {!r}".format(pipeline.detector.name)
        )
    if pipeline.detector.framing is not None:
        raise NotInBrowser(
            "the browser app frames faces by the box mapping; {!r}'s metadata chooses keypoint framing "
            "(crop.framing)".format(pipeline.detector.name)
        )
    return pipeline.detector


def tiling_rules() -> dict[str, Any]:
    """The rules of a single image's tiles (``NeuralFaceDetector.detect``): the automatic grid
    (``edge.detect.tiling``), the cut-edge rule (``blazeface.EDGE_MARGIN``) and the merge of the tiles'
    faces with the whole frame's (``edge.detect.schedule.merge``)."""
    return {
        "auto": tiling.AUTO,
        "face_input_px": tiling.FACE_INPUT_PX,
        "max_tiles": tiling.MAX_TILES,
        "max_grid": tiling.MAX_GRID,
        "max_count": tiling.MAX_COUNT,
        "side_growth": tiling.SIDE_GROWTH,
        "edge_margin": blazeface.EDGE_MARGIN,
        "discover_score": schedule.DISCOVER_SCORE,
        "replace_score": schedule.REPLACE_SCORE,
    }


def app_config(pipeline: Any, api: str | None = None, api_key_required: bool = False) -> dict[str, Any]:
    """``config.json``: the detector's and classifier's constants from ``pipeline``
    (``edge.pipeline.FaceEmotionPipeline``); ``api``: the URL of /v1/emotions when a server answers it."""
    from edge.calibration import FLOOR

    det = neural_detector(pipeline)
    clf = pipeline.classifier
    norm = clf.meta["normalization"]
    return {
        "detector": {
            "model": DETECTOR_FILE,
            "name": det.name,
            "size": det.size,
            "layout": det.layout,
            "rgb": det.rgb,
            "norm": None if det.norm is None else [float(det.norm[0]), float(det.norm[1])],
            "anchors": [[float(x), float(y)] for x, y in det.anchors],
            "box_scale": det.box_scale,
            "outputs": list(det.outputs),
            "raw_score_limit": RAW_SCORE_LIMIT,
            "score_threshold": det.score_threshold,
            "nms_iou": det.nms_iou,
            "tiles": det.tiles if det.tiles == tiling.AUTO else list(det.tiles),
            "tile_overlap": det.tile_overlap,
            "tiling": tiling_rules(),
            "align": det.align,
            "min_size": det.min_size,
            "max_faces": det.max_faces,
            "crop": det.mapping._asdict(),
            "min_roll": det.min_roll,
            "crop_grid": {"region": REGION_GRID, "angle": ANGLE_GRID},
        },
        "classifier": {
            "model": CLASSIFIER_FILE,
            "id": str(clf.model_id),
            "input": dict((k, clf.meta["input"][k]) for k in ("height", "width", "layout")),
            "norm": None if norm["in_model"] else [float(norm["scale"]), float(norm["offset"])],
            "labels": list(clf.labels),
            "temperature": clf.temperature,
            "floor": FLOOR,
        },
        "api": api,
        "api_key_required": bool(api_key_required),
    }


def site_files(pipeline: Any, vendor: bool = True, models: bool = True) -> dict[str, str]:
    """Relative path -> file on disk for everything but ``config.json`` (VendorMissing without the runtime);
    ``vendor``, ``models``: with the runtime and the two ONNX models."""
    files = vendor_files() if vendor else {}
    for root, _dirs, names in os.walk(STATIC_DIR):
        rel = os.path.relpath(root, STATIC_DIR)
        if rel.split(os.sep)[0] == "vendor":
            continue
        for name in names:
            if name.endswith((".html", ".css", ".js")):
                files[os.path.normpath(os.path.join(rel, name)).replace(os.sep, "/")] = os.path.join(root, name)
    if not models:
        return files
    for rel, path in (
        (DETECTOR_FILE, neural_detector(pipeline).backend.path),
        (CLASSIFIER_FILE, pipeline.classifier.backend.path),
    ):
        if not str(path).endswith(".onnx"):
            raise NotInBrowser("the browser runs ONNX models; {} is not one".format(path))
        files[rel] = str(path)
    return files


def page_html(base: str = "") -> bytes:
    """The page; ``base``: where its relative links point (``/static/`` under `fer-edge serve`)."""
    with open(os.path.join(STATIC_DIR, PAGE), encoding="utf-8") as f:
        text = f.read()
    return text.replace(BASE_MARKER, '<base href="{}">'.format(base) if base else "").encode()


def write_site(out: str, pipeline: Any) -> list[str]:
    """The app as static files under ``out`` (any static host serves it); the paths written."""
    import shutil

    written = []
    for rel, src in sorted(site_files(pipeline).items()):
        dest = os.path.join(out, *rel.split("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if rel == PAGE:
            with open(dest, "wb") as f:
                f.write(page_html())
        else:
            shutil.copyfile(src, dest)
        written.append(rel)
    with open(os.path.join(out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(app_config(pipeline), f)
    return written + ["config.json"]
