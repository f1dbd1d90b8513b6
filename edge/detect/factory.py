"""Face detectors by name: BlazeFace (neural, on the model runtimes; the default), OpenCV's Haar
cascade and YuNet (when its model file is given); the names, the defaults and the shipped
neural detectors' files.

Every detector is an ``edge.detect.base.FaceDetector``: ``detect(image) -> list of
Detection(box=(x, y, w, h), score, crop, keypoints)`` in source-frame pixels, faces smaller than
``min_size`` pixels skipped; ``crop`` is the region the classifier sees (``edge.detect.crops``).
The detectors themselves: ``edge.detect.blazeface``, ``edge.detect.haar``, ``edge.detect.yunet``.
Python 3.6 compatible (device code).
"""

import os

from edge.detect.base import DEFAULT_MIN_FACE, DetectorConfigError, DetectorError, DetectorFileError
from edge.detect.crops import face_crop
from edge.detect.haar import HaarDetector
from edge.detect.yunet import YuNetDetector
from edge.shipped import MODELS_DIR

# Neural detectors the project ships (models/<folder>/, made by `make detector-models`). Not
# blazeface-full-192 (`python -m convert.detector_export --model blazeface-full-192` makes it): on
# far faces it finds fewer than blazeface-back with tiles, at a similar cost (docs/experiments/
# 2026-12-07-small-faces.md); `--detector-model` runs it as a blazeface-* detector.
NEURAL = {
    "blazeface-back": "blazeface-back-256",
    "blazeface-short": "blazeface-short-128",
}
DETECTORS = tuple(sorted(NEURAL)) + ("haar", "yunet")
# Chosen by `fer-edge bench detect` (docs/detection.md): the best recall on near and tilted
# faces at a few ms per frame on a 2-core CPU; tiles (detector_tiles) for small faces in wide frames.
DEFAULT_DETECTOR = "blazeface-back"
DETECTOR_MODEL_ENV = "FER_EDGE_DETECTOR_MODEL"


def shipped_detector_path(name=DEFAULT_DETECTOR, suffix=".onnx"):
    """Path of a shipped neural detector's artifact (``.onnx``, or ``.xml`` for its OpenVINO IR)."""
    if name not in NEURAL:
        raise DetectorError("unknown neural detector {!r}: choose {}".format(name, ", ".join(sorted(NEURAL))))
    folder = os.path.join(MODELS_DIR, NEURAL[name])
    if suffix == ".xml":
        return os.path.join(folder, "openvino", "model.xml")
    return os.path.join(folder, "onnx", "model.onnx")


def load_neural_detector(path, runtime=None, backend=None, threads=0, **options):
    """A NeuralFaceDetector on ``path`` (a face-detector artifact) or on an already loaded ``backend``."""
    from edge import metadata as md
    from edge.backends import BackendError, ModelFileError, load_backend
    from edge.detect.blazeface import NeuralFaceDetector

    if backend is None:
        extra = {"threads": threads} if threads and runtime in (None, "onnxruntime", "openvino") else {}
        try:
            backend = load_backend(path, runtime=runtime, kind=md.FACE_DETECTOR, **extra)
        except ModelFileError as exc:
            raise DetectorFileError(str(exc)) from exc
        except BackendError as exc:
            raise DetectorError(str(exc)) from exc
    try:
        return NeuralFaceDetector(backend, **options)
    except ModelFileError as exc:
        backend.close()
        raise DetectorFileError(str(exc)) from exc
    except (DetectorConfigError, md.MetadataError) as exc:
        backend.close()
        raise DetectorError(str(exc)) from exc


def make_detector(
    kind=DEFAULT_DETECTOR,
    min_size=DEFAULT_MIN_FACE,
    yunet_model=None,
    model=None,
    runtime=None,
    backend=None,
    threads=0,
    score_threshold=None,
    nms_iou=None,
    tiles=None,
    tile_overlap=None,
    align=None,
):
    """The detector called ``kind``; for neural ones, ``model`` (or $FER_EDGE_DETECTOR_MODEL) replaces
    the shipped artifact and ``backend`` an already loaded one (the Jetson's TensorRT engine)."""
    if kind == "haar":
        return HaarDetector(min_size=min_size)
    if kind == "yunet":
        return YuNetDetector(yunet_model, min_size=min_size)
    if kind in NEURAL:
        # OpenVINO takes the shipped IR (what DeepLens hardware runs standalone); other runtimes the ONNX
        path = (
            model
            or os.environ.get(DETECTOR_MODEL_ENV)
            or shipped_detector_path(kind, ".xml" if runtime == "openvino" else ".onnx")
        )
        if backend is None and not os.path.isfile(path):
            raise DetectorFileError(
                "{}: detector model not found (a fresh clone has it under models/; "
                "`make detector-models` regenerates it)".format(path)
            )
        return load_neural_detector(
            path,
            runtime=runtime,
            backend=backend,
            threads=threads,
            min_size=min_size,
            score_threshold=score_threshold,
            nms_iou=nms_iou,
            tiles=tiles,
            tile_overlap=tile_overlap,
            align=align,
        )
    raise DetectorError("unknown detector {!r}: choose {}".format(kind, ", ".join(DETECTORS)))


def crop(image, detection):
    """The classifier's crop of a detection (``edge.detect.crops.face_crop``), or of a plain (x, y, w, h) box."""
    return face_crop(image, detection)
