"""The face detector interface (:class:`FaceDetector`) and the detector errors.

Implementations: ``edge.detect.blazeface.NeuralFaceDetector`` (a face-detector artifact on a model
backend: ONNX Runtime, OpenVINO, TensorRT), ``edge.detect.haar.HaarDetector`` and
``edge.detect.yunet.YuNetDetector`` (OpenCV); ``edge.detect.factory.make_detector`` makes them
by name. Python 3.6 compatible (device code).
"""

import abc
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:  # types only: the detectors import these modules themselves
    from edge.detect.crops import CropMapping
    from edge.detect.framing import KeypointFraming

DEFAULT_MIN_FACE = 24


class DetectorError(RuntimeError):
    """A detector that cannot be created; the message says what is missing and how to get it."""


class DetectorFileError(DetectorError):
    """The detector's model file is the problem (missing, corrupt, the wrong kind): retrying will not help."""


class DetectorConfigError(ValueError):
    """A detector option out of range; the message names the option."""


class FaceDetector(abc.ABC):
    """Finds faces in frames: ``detect(image) -> [Detection]``.

    Attributes every detector has: ``name`` (``haar``, ``yunet``, or the neural model's name);
    ``runtime`` (what it runs on: ``opencv``, or its backend's runtime such as ``onnxruntime``,
    ``openvino``, ``tensorrt``); ``min_size`` (faces with a shorter side, in pixels, are not
    reported); ``mapping`` (the box -> FER crop ``edge.detect.crops.CropMapping`` its detections'
    ``crop`` comes from; None when they carry no crop region, so the box itself is cropped);
    ``framing`` (the ``edge.detect.framing.KeypointFraming`` that places the crop from the face's
    keypoints, ahead of ``mapping``; None when the box mapping frames the crops);
    ``keypoint_framing`` (the detector's keypoint template whether in use or not; None without one);
    ``min_roll`` (faces rolled less than this many degrees are cut upright; 0: always levelled);
    ``tiles`` ((cols, rows) the frame is cut into, run as one batch, or ``auto``: chosen from the
    frame size and ``min_size``, ``edge.detect.tiling``; None for a detector that does not tile);
    ``size`` (the side of its square input in pixels; None for a detector without one). A detector
    that tiles also runs any regions of a frame (:meth:`detect_batch`), which
    ``edge.detect.scheduled.ScheduledDetector`` uses to follow faces in video.
    """

    name: str = "detector"
    runtime: str = "unknown"
    min_size: int = DEFAULT_MIN_FACE
    mapping: "Optional[CropMapping]" = None
    framing: "Optional[KeypointFraming]" = None
    keypoint_framing: "Optional[KeypointFraming]" = None
    min_roll: float = 0.0
    tiles: Any = None  # (cols, rows), "auto" or None
    size: Optional[int] = None

    @abc.abstractmethod
    def detect(self, image):
        """The faces in ``image`` (BGR or gray uint8): [``edge.detect.crops.Detection``] with the box
        (x, y, w, h) in the image's pixels, the score, the classifier's crop region, the keypoints."""

    def with_tiles(self, tiles):
        """This detector cutting frames into ``tiles`` ((cols, rows)) on the same loaded model: itself
        when it already does, else a view sharing its model. Only detectors that tile (``tiles`` not
        None) have one."""
        raise DetectorConfigError("detector_tiles: the {} detector does not cut frames into tiles".format(self.name))

    def detect_batch(self, image, items):
        """The faces in regions of ``image``, run as one batch: ``items`` is a list of batch entries,
        each a list of one to four (x0, y0, x1, y1) regions (one fills the input; two to four share
        it as a 2x2 mosaic); the detections of all of them, in frame pixels, merged across regions.
        Only detectors that tile (``tiles`` not None) have it."""
        raise DetectorConfigError("the {} detector does not run frame regions".format(self.name))

    def detect_groups(self, image, groups):
        """Several :meth:`detect_batch` calls on one image in one batch (one engine call): ``groups`` is a
        list of ``items`` lists; one list of detections per group, each as ``detect_batch(image, group)``
        gives it. Only detectors that tile (``tiles`` not None) have it."""
        raise DetectorConfigError("the {} detector does not run frame regions".format(self.name))

    def close(self):  # noqa: B027 (optional hook: OpenCV detectors hold nothing to release)
        """Release the model (default: nothing to release)."""
