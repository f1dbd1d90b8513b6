"""Face detectors, by name: BlazeFace (neural, on the model runtimes; the default), OpenCV's Haar
cascade and YuNet (when its model file is given).

``detect(image) -> list of Detection(box=(x, y, w, h), score, crop, keypoints)`` in source-frame
pixels, faces smaller than ``min_size`` pixels skipped; ``crop`` is the region the classifier
sees (``edge.detect.crops``). Python 3.6 compatible (device code).
"""

import os

import cv2
import numpy as np

from edge.detect.crops import CropMapping, Detection, face_crop
from edge.preprocess import to_gray
from edge.shipped import MODELS_DIR

# Neural detectors the project ships (models/<folder>/, made by `make detector-models`).
NEURAL = {
    "blazeface-back": "blazeface-back-256",
    "blazeface-short": "blazeface-short-128",
    "blazeface-full": "blazeface-full-192",
}
DETECTORS = tuple(sorted(NEURAL)) + ("haar", "yunet")
# Chosen by `fer-edge bench detect` (README, "Face detection"): the best recall on near and tilted
# faces at a few ms per frame on a 2-core CPU; tiles (detector_tiles) for small faces in wide frames.
DEFAULT_DETECTOR = "blazeface-back"
DEFAULT_MIN_FACE = 24
DETECTOR_MODEL_ENV = "FER_EDGE_DETECTOR_MODEL"
# Haar box -> FER crop, measured like the neural detectors' (`fer-edge bench detect --calibrate`).
HAAR_CROP = CropMapping(1.085, 0.0, 0.0)  # models/crop_mapping.json "haar" (shifts < 0.005: 0)

HAAR_FILE = "haarcascade_frontalface_default.xml"
CASCADE_ENV = "FER_EDGE_HAAR_CASCADE"
# Where OpenCV builds without the pip wheel's cv2.data keep the cascades: JetPack's OpenCV 4.1
# (/usr/share/opencv4), Debian/Ubuntu's opencv-data, source builds under /usr/local.
SYSTEM_CASCADE_DIRS = (
    "/usr/share/opencv4/haarcascades",
    "/usr/share/opencv/haarcascades",
    "/usr/local/share/opencv4/haarcascades",
    "/usr/local/share/opencv/haarcascades",
    "/usr/share/OpenCV/haarcascades",  # OpenCV 3.x layouts (e.g. the DeepLens image)
    "/usr/local/share/OpenCV/haarcascades",
)


class DetectorError(RuntimeError):
    """A detector that cannot be created; the message says what is missing and how to get it."""


class DetectorFileError(DetectorError):
    """The detector's model file is the problem (missing, corrupt, the wrong kind): retrying will not help."""


def find_haar_cascade(name=HAAR_FILE):
    """Path of a Haar cascade file: $FER_EDGE_HAAR_CASCADE, cv2.data, then system folders."""
    env = os.environ.get(CASCADE_ENV)
    if env:
        if not os.path.isfile(env):
            raise DetectorError("{}={}: file not found".format(CASCADE_ENV, env))
        return env
    folders = []
    data = getattr(cv2, "data", None)
    if data is not None and getattr(data, "haarcascades", None):
        folders.append(data.haarcascades)
    folders.extend(SYSTEM_CASCADE_DIRS)
    for folder in folders:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise DetectorError("Haar cascade {} not found in {} (OpenCV 5 wheels no longer ship it): install "
                        "Debian/Ubuntu's opencv-data, or opencv-python-headless<5, or set {} to the "
                        "file".format(name, ", ".join(folders), CASCADE_ENV))


def _clip(box, width, height):
    x, y, w, h = [int(round(v)) for v in box]
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(width, x + w), min(height, y + h)
    return (x0, y0, max(0, x1 - x0), max(0, y1 - y0))


def _downscaled(gray, max_side):
    """(image, factor): ``gray`` shrunk so its longer side is at most ``max_side`` (0: unchanged)."""
    longest = max(gray.shape[:2])
    if not max_side or longest <= max_side:
        return gray, 1.0
    factor = max_side / float(longest)
    size = (int(round(gray.shape[1] * factor)), int(round(gray.shape[0] * factor)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA), factor


class HaarDetector(object):
    """Haar cascade on the gray frame, shrunk to ``max_side`` pixels for speed (boxes mapped back)."""

    name = "haar"

    def __init__(self, min_size=DEFAULT_MIN_FACE, scale_factor=1.2, min_neighbors=6, cascade=None, max_side=640,
                 mapping=HAAR_CROP):
        if not hasattr(cv2, "CascadeClassifier"):
            raise DetectorError("this OpenCV ({}) has no CascadeClassifier (removed in OpenCV 5): install "
                                "opencv-python-headless<5 or use the YuNet detector".format(cv2.__version__))
        path = cascade or find_haar_cascade()
        self.classifier = cv2.CascadeClassifier(path)
        if self.classifier.empty():
            raise DetectorError("{}: not a loadable Haar cascade".format(path))
        self.min_size = int(min_size)
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.max_side = int(max_side)
        self.mapping = mapping

    def detect(self, image):
        gray = to_gray(image)
        small, factor = _downscaled(gray, self.max_side)
        min_small = max(12, int(self.min_size * factor))
        found = self.classifier.detectMultiScale(small, scaleFactor=self.scale_factor,
                                                 minNeighbors=self.min_neighbors,
                                                 minSize=(min_small, min_small))
        h, w = gray.shape[:2]
        out = []
        for box in (found if len(found) else []):
            box = _clip([v / factor for v in box], w, h)
            if box[2] >= self.min_size and box[3] >= self.min_size:
                out.append(Detection(box, 1.0, self.mapping.region(box)))
        return out


class YuNetDetector(object):
    """cv2.FaceDetectorYN (OpenCV >= 4.5.4) with a user-supplied face_detection_yunet_*.onnx."""

    name = "yunet"

    def __init__(self, model_path, min_size=DEFAULT_MIN_FACE, score_threshold=0.7, nms_threshold=0.3, top_k=50):
        if not hasattr(cv2, "FaceDetectorYN"):
            raise DetectorError("this OpenCV ({}) has no FaceDetectorYN (needs 4.5.4+); use the Haar "
                                "detector".format(cv2.__version__))
        if not model_path or not os.path.isfile(model_path):
            raise DetectorError("YuNet model file not found: {!r} (download face_detection_yunet_2023mar.onnx "
                                "from the OpenCV model zoo and pass its path)".format(model_path))
        self.detector = cv2.FaceDetectorYN.create(model_path, "", (320, 320), score_threshold,
                                                  nms_threshold, top_k)
        self.min_size = int(min_size)
        self.size = None

    def detect(self, image):
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        h, w = image.shape[:2]
        if self.size != (w, h):
            self.detector.setInputSize((w, h))
            self.size = (w, h)
        _, faces = self.detector.detect(image)
        out = []
        for row in (faces if faces is not None else np.zeros((0, 15))):
            box = _clip(row[:4], w, h)
            if box[2] >= self.min_size and box[3] >= self.min_size:
                out.append(Detection(box, float(row[-1]), None, [(float(row[4 + 2 * k]), float(row[5 + 2 * k]))
                                                                  for k in range(5)]))
        return out


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
    from edge.detect.blazeface import DetectorConfigError, NeuralFaceDetector
    if backend is None:
        extra = {"threads": threads} if threads and runtime in (None, "onnxruntime", "openvino") else {}
        try:
            backend = load_backend(path, runtime=runtime, kind=md.FACE_DETECTOR, **extra)
        except ModelFileError as exc:
            raise DetectorFileError(str(exc))
        except BackendError as exc:
            raise DetectorError(str(exc))
    try:
        return NeuralFaceDetector(backend, **options)
    except ModelFileError as exc:
        backend.close()
        raise DetectorFileError(str(exc))
    except (DetectorConfigError, md.MetadataError) as exc:
        backend.close()
        raise DetectorError(str(exc))


def make_detector(kind=DEFAULT_DETECTOR, min_size=DEFAULT_MIN_FACE, yunet_model=None, model=None, runtime=None,
                  backend=None, threads=0, score_threshold=None, nms_iou=None, tiles=None, tile_overlap=None,
                  align=None):
    """The detector called ``kind``; for neural ones, ``model`` (or $FER_EDGE_DETECTOR_MODEL) replaces
    the shipped artifact and ``backend`` an already loaded one (the Jetson's TensorRT engine)."""
    if kind == "haar":
        return HaarDetector(min_size=min_size)
    if kind == "yunet":
        return YuNetDetector(yunet_model, min_size=min_size)
    if kind in NEURAL:
        # OpenVINO takes the shipped IR (what DeepLens hardware runs standalone); other runtimes the ONNX
        path = model or os.environ.get(DETECTOR_MODEL_ENV) or shipped_detector_path(
            kind, ".xml" if runtime == "openvino" else ".onnx")
        if backend is None and not os.path.isfile(path):
            raise DetectorFileError("{}: detector model not found (a fresh clone has it under models/; "
                                "`make detector-models` regenerates it)".format(path))
        return load_neural_detector(path, runtime=runtime, backend=backend, threads=threads, min_size=min_size,
                                    score_threshold=score_threshold, nms_iou=nms_iou, tiles=tiles,
                                    tile_overlap=tile_overlap, align=align)
    raise DetectorError("unknown detector {!r}: choose {}".format(kind, ", ".join(DETECTORS)))


def crop(image, detection):
    """The classifier's crop of a detection (``edge.detect.crops.face_crop``), or of a plain (x, y, w, h) box."""
    return face_crop(image, detection)
