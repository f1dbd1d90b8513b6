"""OpenCV's YuNet face detector (:class:`YuNetDetector`), on a user-supplied model file.

Python 3.6 compatible (device code).
"""

import os

import cv2
import numpy as np

from edge.detect.base import DEFAULT_MIN_FACE, DetectorError, FaceDetector
from edge.detect.crops import Detection, clip_xywh


class YuNetDetector(FaceDetector):
    """cv2.FaceDetectorYN (OpenCV >= 4.5.4) with a user-supplied face_detection_yunet_*.onnx; its
    detections carry no crop region (the classifier gets the box)."""

    name = "yunet"
    runtime = "opencv"

    def __init__(self, model_path, min_size=DEFAULT_MIN_FACE, score_threshold=0.7, nms_threshold=0.3, top_k=50):
        if not hasattr(cv2, "FaceDetectorYN"):
            raise DetectorError(
                "this OpenCV ({}) has no FaceDetectorYN (needs 4.5.4+); use the Haar detector".format(cv2.__version__)
            )
        if not model_path or not os.path.isfile(model_path):
            raise DetectorError(
                "YuNet model file not found: {!r} (download face_detection_yunet_2023mar.onnx "
                "from the OpenCV model zoo and pass its path)".format(model_path)
            )
        self.detector = cv2.FaceDetectorYN.create(model_path, "", (320, 320), score_threshold, nms_threshold, top_k)
        self.min_size = int(min_size)
        self._frame_size = (0, 0)  # the frame size the detector's input is set to

    def detect(self, image):
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        h, w = image.shape[:2]
        if self._frame_size != (w, h):
            self.detector.setInputSize((w, h))
            self._frame_size = (w, h)
        _, faces = self.detector.detect(image)
        out = []
        for row in faces if faces is not None else np.zeros((0, 15)):
            box = clip_xywh(row[:4], w, h)
            if box[2] >= self.min_size and box[3] >= self.min_size:
                out.append(
                    Detection(
                        box, float(row[-1]), None, [(float(row[4 + 2 * k]), float(row[5 + 2 * k])) for k in range(5)]
                    )
                )
        return out
