"""Face detectors: OpenCV's Haar cascade (everywhere) and YuNet (when its model file is given).

``detect(image) -> list of Detection(box=(x, y, w, h), score)`` in source-frame pixels, faces
smaller than ``min_size`` pixels skipped. Python 3.6 compatible (device code).
"""

import collections
import os

import cv2
import numpy as np

from .preprocess import to_gray

Detection = collections.namedtuple("Detection", "box score")

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

    def __init__(self, min_size=50, scale_factor=1.2, min_neighbors=6, cascade=None, max_side=640):
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
                out.append(Detection(box, 1.0))
        return out


class YuNetDetector(object):
    """cv2.FaceDetectorYN (OpenCV >= 4.5.4) with a user-supplied face_detection_yunet_*.onnx."""

    name = "yunet"

    def __init__(self, model_path, min_size=50, score_threshold=0.7, nms_threshold=0.3, top_k=50):
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
                out.append(Detection(box, float(row[-1])))
        return out


def make_detector(kind="haar", min_size=50, yunet_model=None):
    if kind == "haar":
        return HaarDetector(min_size=min_size)
    if kind == "yunet":
        return YuNetDetector(yunet_model, min_size=min_size)
    raise DetectorError("unknown detector {!r}: choose haar or yunet".format(kind))


def crop(image, box):
    """The face crop of a detection box from the frame (no copy)."""
    x, y, w, h = box
    return image[y:y + h, x:x + w]
