"""A camera's detector for video: :class:`ScheduledDetector` runs a neural detector on the regions
its :class:`edge.detect.schedule.DetectionSchedule` plans for each frame (the whole frame, the
small faces it follows, one discovery tile in rotation) instead of every tile on every frame.

``edge.agent.assembly.camera_detector`` gives each camera one when ``detector_tiles`` is ``auto``
(the default), so every agent (``fer-edge run``, ``python3 -m jetson``, ``python3 -m deeplens``,
the Greengrass component) runs the same schedule. Python 3.6 compatible (device code).
"""

import numpy as np

from edge.detect.base import DetectorConfigError, FaceDetector
from edge.detect.schedule import DetectionSchedule
from edge.detect.tiling import AUTO


class ScheduledDetector(FaceDetector):
    """``detect(frame)`` on the regions the schedule plans; stateful, so one per camera. ``detector``:
    a FaceDetector that tiles (its ``detect_groups``), shared and closed by its owner."""

    def __init__(self, detector):
        if detector.tiles is None or detector.size is None:
            raise DetectorConfigError(
                "detector_tiles: the {} detector does not cut frames into regions".format(detector.name)
            )
        self.detector = detector
        self.name, self.mapping, self.runtime = detector.name, detector.mapping, detector.runtime
        self.min_size, self.size = detector.min_size, detector.size
        self.tiles = AUTO
        self.schedule = DetectionSchedule(detector.size, detector.min_size)

    def detect(self, image):
        image = np.asarray(image)
        height, width = image.shape[:2]
        items = self.schedule.plan(width, height)
        whole, closer = self.detector.detect_groups(image, [items[:1], items[1:]])  # one engine call
        return self.schedule.update(whole, closer)

    def detect_batch(self, image, items):
        return self.detector.detect_batch(image, items)

    def detect_groups(self, image, groups):
        return self.detector.detect_groups(image, groups)

    def close(self):
        """Nothing: the wrapped detector is shared (its owner closes it)."""
