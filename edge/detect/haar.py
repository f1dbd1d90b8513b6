"""OpenCV's Haar cascade face detector (:class:`HaarDetector`) and the search for its cascade file.

Python 3.6 compatible (device code).
"""

import os

import cv2

from edge.detect.base import DEFAULT_MIN_FACE, DetectorError, FaceDetector
from edge.detect.crops import CropMapping, Detection, clip_xywh
from edge.preprocess import to_gray

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
    raise DetectorError(
        "Haar cascade {} not found in {} (OpenCV 5 wheels no longer ship it): install "
        "Debian/Ubuntu's opencv-data, or opencv-python-headless<5, or set {} to the "
        "file".format(name, ", ".join(folders), CASCADE_ENV)
    )


def _downscaled(gray, max_side):
    """(image, factor): ``gray`` shrunk so its longer side is at most ``max_side`` (0: unchanged)."""
    longest = max(gray.shape[:2])
    if not max_side or longest <= max_side:
        return gray, 1.0
    factor = max_side / float(longest)
    size = (int(round(gray.shape[1] * factor)), int(round(gray.shape[0] * factor)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA), factor


class HaarDetector(FaceDetector):
    """Haar cascade on the gray frame, shrunk to ``max_side`` pixels for speed (boxes mapped back)."""

    name = "haar"
    runtime = "opencv"
    mapping: CropMapping

    def __init__(
        self,
        min_size=DEFAULT_MIN_FACE,
        scale_factor=1.2,
        min_neighbors=6,
        cascade=None,
        max_side=640,
        mapping=HAAR_CROP,
    ):
        if not hasattr(cv2, "CascadeClassifier"):
            raise DetectorError(
                "this OpenCV ({}) has no CascadeClassifier (removed in OpenCV 5): install "
                "opencv-python-headless<5 or use the YuNet detector".format(cv2.__version__)
            )
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
        found = self.classifier.detectMultiScale(
            small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(min_small, min_small)
        )
        h, w = gray.shape[:2]
        out = []
        for box in found if len(found) else []:
            box = clip_xywh([v / factor for v in box], w, h)
            if box[2] >= self.min_size and box[3] >= self.min_size:
                out.append(Detection(box, 1.0, self.mapping.region(box), None))
        return out
