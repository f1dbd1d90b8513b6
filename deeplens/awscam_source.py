"""Frames from the DeepLens camera through ``awscam.getLastFrame()``.

``getLastFrame()`` returns ``(ret, frame)``: the newest frame of the device's video server (BGR
uint8, 1920x1080 by default on the DeepLens) and whether the call worked. The source is live: each
:meth:`AwscamSource.read` asks for the newest frame, so a slow pipeline never queues stale frames.
A failed call (``ret`` False, an exception, or an empty/non-uint8 image) is skipped, counted in
``corrupt`` (reported as ``corrupt_frames`` in the agent's stats) and retried after a back-off
that doubles from ``min_backoff`` to ``max_backoff`` seconds; the first failure of a run of
failures is logged as a warning, the rest at debug level, and recovery is logged with the count.
``read`` returns None only once the source is closed or the ``stop`` event (watched, never set
by the source) is set, so the agent loop ends.

Python 3.6/3.7 compatible (device code); ``awscam`` is imported when the source is created
(:func:`deeplens.device.load_awscam`), or a stand-in module is passed as ``camera``.
"""

import logging
import threading
import time

from edge.agent.sources import Frame, FrameSource

from .device import load_awscam

log = logging.getLogger(__name__)


class AwscamSource(FrameSource):
    """Live frames of the DeepLens camera (``awscam.getLastFrame``)."""

    live = True

    def __init__(self, camera=None, stop=None, min_backoff=0.05, max_backoff=2.0, max_failures=None, uri="awscam"):
        FrameSource.__init__(self, uri)
        self.camera = camera if camera is not None else load_awscam()
        self.stop_request = stop  # the caller's event: watched, never set here
        self.stopping = threading.Event()  # set by close()
        self.min_backoff = float(min_backoff)
        self.max_backoff = float(max_backoff)
        self.max_failures = max_failures  # None: retry for ever (a camera that comes back)
        self.index = 0
        self.reconnects = 0  # runs of failures that ended with a frame again
        self.failures = 0  # consecutive failed reads right now

    def _grab(self):
        try:
            ret, image = self.camera.getLastFrame()
        except Exception as exc:  # the video server restarting, a driver error
            return None, "{}: {}".format(type(exc).__name__, exc)
        if not ret:
            return None, "getLastFrame() returned ret=False"
        if image is None or getattr(image, "size", 0) == 0 or getattr(image, "ndim", 0) not in (2, 3):
            return None, "getLastFrame() returned an empty frame"
        if str(getattr(image, "dtype", "")) != "uint8":
            return None, "getLastFrame() returned a {} frame (expected uint8)".format(image.dtype)
        return image, None

    def stopped(self):
        return self.stopping.is_set() or (self.stop_request is not None and self.stop_request.is_set())

    def _wait(self, seconds):
        """Sleep ``seconds`` unless stopped first (checked every 0.1 s); True when stopped."""
        deadline = time.time() + seconds
        while not self.stopped():
            left = deadline - time.time()
            if left <= 0:
                return False
            self.stopping.wait(min(0.1, left))
        return True

    def read(self):
        backoff = self.min_backoff
        while not self.stopped():
            image, problem = self._grab()
            if image is not None:
                if self.failures:
                    log.info("awscam: frames again after %d failed reads", self.failures)
                    self.reconnects += 1
                    self.failures = 0
                frame = Frame(self.index, image, time.time())
                self.index += 1
                return frame
            self.corrupt += 1
            self.failures += 1
            (log.warning if self.failures == 1 else log.debug)(
                "awscam: no frame (%s); retrying in %.2f s", problem, backoff
            )
            if self.max_failures is not None and self.failures >= self.max_failures:
                log.error("awscam: %d reads in a row failed; giving up", self.failures)
                return None
            if self._wait(backoff):
                break
            backoff = min(self.max_backoff, backoff * 2)
        return None

    def close(self):
        self.stopping.set()
