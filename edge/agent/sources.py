"""Frame sources named by URI (as jetson-utils' videoSource):

    0, 1, ...               a USB/V4L2 camera by index
    v4l2:///dev/video0      a V4L2 device
    csi://0                 a Jetson CSI camera through GStreamer's nvarguscamerasrc
    rtsp://..., http(s)://  a network stream
    path/to/video.mp4       a video file
    path/to/folder          the images of a folder, in name order
    path/to/image.jpg       one image

File sources deliver every frame (none dropped) and end when exhausted; a video file is read as
fast as the pipeline takes it, or with ``realtime=True`` (config ``realtime``, ``--realtime``) at its
own frame rate, as a camera would deliver it (replaying a recording to dashboards, subscribers and
the live view at the pace they will see on a device). Live sources (cameras,
streams) run a reader thread that keeps only the newest frame, so a slow pipeline drops stale
frames instead of queueing them, and reopen the device with exponential backoff when it drops.

Python 3.6 compatible (device code).
"""

import collections
import logging
import os
import re
import stat
import threading
import time
from typing import Optional

import cv2

log = logging.getLogger(__name__)

Frame = collections.namedtuple("Frame", "index image timestamp")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm")
END_SLACK = 2  # frames a video file may fall short of the count it announces without "ended early"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".h264")


class SourceError(RuntimeError):
    """A frame source that cannot be opened; the message names the URI and what to do."""


def has_gstreamer():
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


def csi_pipeline(sensor_id=0, width=1280, height=720, framerate=30, flip=0):
    """GStreamer pipeline string for a Jetson CSI camera (nvarguscamerasrc) into BGR appsink."""
    return (
        "nvarguscamerasrc sensor-id={} ! video/x-raw(memory:NVMM), width={}, height={}, "
        "framerate={}/1, format=NV12 ! nvvidconv flip-method={} ! video/x-raw, width={}, height={}, "
        "format=BGRx ! videoconvert ! video/x-raw, format=BGR ! appsink drop=true max-buffers=1 sync=false"
    ).format(int(sensor_id), int(width), int(height), int(framerate), int(flip), int(width), int(height))


class FrameSource(object):
    """Iterable of Frame(index, image BGR uint8, timestamp). ``live`` sources may drop frames.

    What every source declares (the loop, the lifecycle and the summary read these, never guess):
    ``uri``, ``live``, ``fps`` (None when the source does not say), ``corrupt`` (frames skipped as
    undecodable), ``reconnects`` (times a live source was opened again) and ``ended_early`` (why a
    file source stopped before its announced end, else None)."""

    live = False
    fps: Optional[float] = None  # the source's frame rate when it says (video files, cameras), else None
    reconnects = 0
    ended_early: Optional[str] = None  # why a file source ended before its announced end (text), else None

    def __init__(self, uri):
        self.uri = uri
        self.corrupt = 0  # frames that could not be decoded and were skipped

    def read(self):
        """The next Frame, or None when the source is exhausted (file sources only)."""
        raise NotImplementedError

    def close(self):
        pass

    def __iter__(self):
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ImageFolderSource(FrameSource):
    """The images of a folder (or one image file), in name order; unreadable files are skipped."""

    def __init__(self, uri):
        FrameSource.__init__(self, uri)
        if os.path.isdir(uri):
            names = sorted(n for n in os.listdir(uri) if n.lower().endswith(IMAGE_SUFFIXES))
            self.paths = [os.path.join(uri, n) for n in names]
            if not self.paths:
                raise SourceError("{}: folder holds no images ({})".format(uri, ", ".join(IMAGE_SUFFIXES)))
        else:
            self.paths = [uri]
        self.position = 0

    def read(self):
        while self.position < len(self.paths):
            path = self.paths[self.position]
            index = self.position
            self.position += 1
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is None:
                self.corrupt += 1
                log.warning("%s: unreadable image, skipped", path)
                continue
            return Frame(index, image, time.time())
        return None


class VideoFileSource(FrameSource):
    """Every frame of a video file, in order; ends at the end of the file.

    A frame that fails to decode before the end the container announces is counted in
    ``corrupt`` and skipped (up to ``max_skip`` in a row), so one bad frame does not end the run;
    after ``max_skip`` in a row the file ends there. A file whose frames stop decoding well before
    the end it announces (a truncated or damaged file) says where in ``ended_early``.
    ``realtime``: frame i is delivered no earlier than i / fps seconds after the first (a pipeline
    slower than the file's frame rate is not made slower; nothing is dropped either way).
    """

    def __init__(self, uri, max_skip=25, realtime=False, clock=time.monotonic, sleep=time.sleep):
        FrameSource.__init__(self, uri)
        self.capture = cv2.VideoCapture(uri)
        if not self.capture.isOpened():
            raise SourceError(
                "{}: cannot open the video (unknown format or codec missing in this OpenCV build)".format(uri)
            )
        self.frame_count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0)
        self.fps = fps if 0 < fps < 1000 else None
        self.max_skip = max_skip
        self.index = 0
        if realtime and self.fps is None:
            log.warning("%s: the video states no frame rate; realtime ignored, frames as fast as they are read", uri)
        self.realtime = bool(realtime and self.fps)
        self.clock, self.sleep = clock, sleep
        self.started: Optional[float] = None

    def _pace(self):
        if self.started is None:
            self.started = self.clock()
        wait = self.started + self.index / (self.fps or 1.0) - self.clock()  # realtime: fps is known
        if wait > 0:
            self.sleep(wait)

    def read(self):
        skipped = 0
        while True:
            ok, image = self.capture.read()
            if ok and image is not None:
                if self.realtime:
                    self._pace()
                frame = Frame(self.index, image, time.time())
                self.index += 1
                return frame
            if self.index >= self.frame_count - 1 or skipped >= self.max_skip:
                self._check_end(skipped)
                return None
            skipped += 1
            self.corrupt += 1
            log.warning("%s: frame %d could not be decoded, skipped", self.uri, self.index)
            self.index += 1

    def _check_end(self, skipped):
        """At the end: ``ended_early`` when the last ``skipped`` failed reads began more than
        END_SLACK frames before the end the file announces (some containers' counts are estimates)."""
        stopped = self.index - skipped  # the first frame of the failed run that ended the file
        if self.frame_count - stopped > END_SLACK:
            self.ended_early = (
                "decoding stopped at frame {} of the {} frames the file announces: truncated or damaged?".format(
                    stopped, self.frame_count
                )
            )
            log.warning("%s: ended early: %s", self.uri, self.ended_early)

    def close(self):
        self.capture.release()


class LiveSource(FrameSource):
    """A camera or stream read by a thread that keeps only the newest frame; reconnects.

    ``opener()`` returns a capture with cv2.VideoCapture's ``isOpened()``, ``read()``, ``get(prop)``
    and ``release()`` (None when it cannot open)."""

    live = True

    def __init__(self, uri, opener, max_backoff=30.0, open_timeout=10.0):
        FrameSource.__init__(self, uri)
        self.opener = opener
        self.max_backoff = max_backoff
        self.reconnects = 0
        self.index = 0
        self.latest = None
        self.condition = threading.Condition()
        self.stopping = threading.Event()
        capture = opener()
        if capture is not None and capture.isOpened():
            fps = float(capture.get(cv2.CAP_PROP_FPS) or 0)
            self.fps = fps if 0 < fps < 1000 else None
        if capture is None or not capture.isOpened():
            raise SourceError("{}: cannot open the camera/stream".format(uri))
        self.thread = threading.Thread(target=self._run, args=(capture,), name="frame-reader", daemon=True)
        self.thread.start()

    def _run(self, capture):
        backoff = 1.0
        while not self.stopping.is_set():
            ok, image = capture.read() if capture is not None else (False, None)
            if ok and image is not None:
                backoff = 1.0
                with self.condition:
                    self.latest = Frame(self.index, image, time.time())
                    self.index += 1
                    self.condition.notify_all()
                continue
            if capture is not None:
                capture.release()
            log.warning("%s: no frame; reconnecting in %.0f s", self.uri, backoff)
            if self.stopping.wait(backoff):
                break
            backoff = min(self.max_backoff, backoff * 2)
            capture = self.opener()
            if capture is not None and capture.isOpened():
                self.reconnects += 1
                log.info("%s: reconnected", self.uri)
            else:
                capture = None
        if capture is not None:
            capture.release()
        with self.condition:
            self.condition.notify_all()

    def read(self, timeout=None):
        """The newest frame not yet returned; waits for one. None once closed."""
        with self.condition:
            while self.latest is None and not self.stopping.is_set():
                if not self.condition.wait(timeout) and timeout is not None:
                    return None
            frame, self.latest = self.latest, None
            return frame

    def close(self):
        self.stopping.set()
        with self.condition:
            self.condition.notify_all()
        self.thread.join(timeout=5.0)


def _csi_opener(uri):
    m = re.match(r"^csi://(\d+)(?:\?(.*))?$", uri)
    if not m:
        raise SourceError("{}: expected csi://<sensor-id>[?width=W&height=H&framerate=F&flip=N]".format(uri))
    params = dict(p.split("=", 1) for p in (m.group(2) or "").split("&") if "=" in p)
    unknown = set(params) - {"width", "height", "framerate", "flip"}
    if unknown:
        raise SourceError("{}: unknown parameter(s) {}".format(uri, ", ".join(sorted(unknown))))
    if not has_gstreamer():
        raise SourceError(
            "{}: this OpenCV ({}) is built without GStreamer, which CSI cameras need. "
            "On a Jetson use the system OpenCV from JetPack (python3-opencv, /usr/lib/python3/"
            "dist-packages), not the pip wheel: `pip3 uninstall opencv-python "
            "opencv-python-headless`".format(uri, cv2.__version__)
        )
    try:
        pipeline = csi_pipeline(m.group(1), **{k: int(v) for k, v in params.items()})
    except ValueError:
        raise SourceError("{}: parameters must be integers".format(uri)) from None
    return lambda: cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)


def open_source(uri, realtime=False):
    """A FrameSource for ``uri`` (see the module doc for the forms); ``realtime``: a video file is
    delivered at its frame rate (ignored by cameras, streams and images)."""
    uri = str(uri).strip()
    if not uri:
        raise SourceError("empty source URI")
    if re.match(r"^\d+$", uri):
        return LiveSource(uri, lambda: cv2.VideoCapture(int(uri)))
    if uri.startswith("v4l2://"):
        device = uri[len("v4l2://") :] or "/dev/video0"
        return LiveSource(uri, lambda: cv2.VideoCapture(device, cv2.CAP_V4L2))
    if uri.startswith("csi://"):
        return LiveSource(uri, _csi_opener(uri))
    if re.match(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp)://", uri):
        return LiveSource(uri, lambda: cv2.VideoCapture(uri, cv2.CAP_FFMPEG))
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    if not os.path.exists(uri):
        raise SourceError(
            "{}: no such file or folder (sources: a video or image file, an image folder, "
            "0, v4l2:///dev/video0, csi://0, rtsp://...)".format(uri)
        )
    if os.path.isdir(uri) or uri.lower().endswith(IMAGE_SUFFIXES):
        return ImageFolderSource(uri)
    if stat.S_ISFIFO(os.stat(uri).st_mode):  # a stream written by another process (DeepLens ch2_out.mjpeg)
        return LiveSource(uri, lambda: cv2.VideoCapture(uri))
    return VideoFileSource(uri, realtime=realtime)


def source_from_config(config):
    """The source an agent config names: its ``source`` URI, with its ``realtime`` setting."""
    return open_source(config["source"], realtime=config.get("realtime", False))
