"""``detect_emotions(image)``: faces and emotions of one image, as the agent sees them.

    from edge import detect_emotions
    detect_emotions(cv2.imread("people.jpg"))
    # [{'box': [x, y, w, h], 'emotion': 'happiness', 'confidence': 0.93, 'scores': {...}}, ...]

The same detector, preprocessing and model as the agent (like the ``fer`` package's
``FER().detect_emotions``). ``FaceEmotionPipeline`` holds the loaded parts for repeated calls.
"""

import functools

import numpy as np

from edge.classifier import load_classifier
from edge.detect.factory import DEFAULT_DETECTOR, DEFAULT_MIN_FACE, crop, make_detector


class FaceEmotionPipeline(object):
    """The loaded detector and classifier; ``detector_options`` go to ``edge.detect.factory.make_detector``
    (detector_model -> model, score_threshold, nms_iou, tiles, align, threads)."""

    def __init__(
        self,
        model=None,
        detector=DEFAULT_DETECTOR,
        min_face=DEFAULT_MIN_FACE,
        yunet_model=None,
        runtime=None,
        **detector_options,
    ):
        options = dict(detector_options)
        options["model"] = options.pop("detector_model", None)
        self.classifier = load_classifier(model, runtime=runtime)
        self._detector_args = (detector, dict(options, min_size=min_face, yunet_model=yunet_model, runtime=runtime))
        self.detector = self.new_detector()
        self.labels = self.classifier.labels

    def new_detector(self):
        """Another detector made like ``self.detector`` (for a thread of its own: a detector is not assumed
        to be thread-safe)."""
        kind, options = self._detector_args
        return make_detector(kind, **options)

    def find_faces(self, image, detector=None):
        """The detections in ``image`` (BGR or gray uint8) and their classifier crops, in the same order;
        ``detector``: one from ``new_detector`` instead of ``self.detector``."""
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError("expected a uint8 BGR or grayscale image, got {} {}".format(image.dtype, image.shape))
        detections = (detector or self.detector).detect(image)
        return detections, [crop(image, d) for d in detections]

    def describe(self, detections, probs):
        """The faces as ``detect_emotions`` gives them: box, top emotion, its confidence, every score."""
        out = []
        for det, p in zip(detections, probs):
            top = int(np.argmax(p))
            out.append(
                {
                    "box": [int(v) for v in det.box],
                    "emotion": self.labels[top],
                    "confidence": round(float(p[top]), 4),
                    "scores": dict((label, round(float(v), 4)) for label, v in zip(self.labels, p)),
                }
            )
        return out

    def detect_emotions(self, image):
        detections, crops = self.find_faces(image)
        return self.describe(detections, self.classifier.predict(crops))


@functools.lru_cache(maxsize=4)
def _pipeline(model, detector, min_face, yunet_model, options):
    return FaceEmotionPipeline(model, detector, min_face, yunet_model, **dict(options))


def detect_emotions(
    image, model=None, detector=DEFAULT_DETECTOR, min_face=DEFAULT_MIN_FACE, yunet_model=None, **detector_options
):
    """Faces in ``image`` (BGR or gray uint8) with their emotions; parts are loaded once and reused."""
    return _pipeline(model, detector, min_face, yunet_model, tuple(sorted(detector_options.items()))).detect_emotions(
        image
    )
