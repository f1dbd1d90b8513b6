"""The DeepLens project stream: annotated frames as JPEGs written into the FIFO ``/tmp/results.mjpeg``.

The DeepLens console's "project stream" and ``mplayer -demuxer lavf -lavfdopts
format=mjpeg:probesize=32 /tmp/results.mjpeg`` on the device read Motion-JPEG from that FIFO (a
named pipe; the Lambda may only write under /tmp). :class:`ProjectStream` is the agent's
annotator (``write(frame, faces)``, ``close()``):

* ``write`` never blocks the agent loop: it keeps only the newest frame and its faces (an older
  one not yet written is dropped and counted in ``dropped``); drawing (``edge.view.annotate.draw``),
  resizing to ``resolution`` and JPEG encoding happen in the writer thread;
* the writer thread creates the FIFO when it is missing (``os.mkfifo``), then opens it with
  ``O_WRONLY | O_NONBLOCK``, which fails with ENXIO while no reader has it open: it retries every
  ``retry_interval`` seconds until a reader comes (the console's stream service, or mplayer);
  once open, the descriptor is switched back to blocking writes so every JPEG is written whole;
* a reader that goes away (EPIPE) sends the writer back to waiting for the next reader;
* a path that exists but is not a FIFO is left alone and the stream stays off (logged).

Each JPEG is written once, as soon as it is ready (frames are not repeated in a busy loop).
Python 3.6/3.7 compatible (device code): stdlib, numpy, OpenCV.
"""

import errno
import fcntl
import logging
import os
import stat
import threading

import cv2

from edge.view.annotate import draw

log = logging.getLogger(__name__)

DEFAULT_FIFO = "/tmp/results.mjpeg"
RESOLUTIONS = {"1080p": (1920, 1080), "720p": (1280, 720), "480p": (858, 480)}


def parse_resolution(text):
    """``480p``/``720p``/``1080p``, ``WxH``, or ``source`` (no resize) -> (w, h) or None."""
    text = str(text).strip().lower()
    if text in ("", "source", "native", "none"):
        return None
    if text in RESOLUTIONS:
        return RESOLUTIONS[text]
    try:
        w, h = [int(v) for v in text.split("x")]
    except ValueError:
        raise ValueError("stream resolution {!r}: use 480p, 720p, 1080p, WxH or source".format(text)) from None
    if w < 16 or h < 16:
        raise ValueError("stream resolution {!r} is too small".format(text))
    return (w, h)


def ensure_fifo(path):
    """Create the FIFO at ``path`` if missing; False (logged) when ``path`` is something else."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            os.makedirs(folder)
        try:
            os.mkfifo(path)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise
        return stat.S_ISFIFO(os.stat(path).st_mode)
    if not stat.S_ISFIFO(mode):
        log.error("%s exists and is not a FIFO; the project stream is off (remove it to enable the stream)", path)
        return False
    return True


def encode_jpeg(image, resolution=None, quality=80):
    """JPEG bytes of a BGR image, resized to ``resolution`` (w, h) first when given."""
    if resolution is not None and (image.shape[1], image.shape[0]) != tuple(resolution):
        image = cv2.resize(image, tuple(resolution), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return jpeg.tobytes()


class ProjectStream(object):
    """Annotated frames into the project-stream FIFO, from a thread (see the module doc)."""

    def __init__(self, path=DEFAULT_FIFO, resolution="480p", quality=80, annotate=True, retry_interval=0.2, start=True):
        self.path = path
        self.resolution = parse_resolution(resolution) if not isinstance(resolution, tuple) else resolution
        self.quality = int(quality)
        self.annotate = annotate
        self.retry_interval = float(retry_interval)
        self.condition = threading.Condition()
        self.pending = None  # (image, faces) waiting for the writer
        self.stopping = threading.Event()
        self.written = 0  # JPEGs written whole
        self.dropped = 0  # frames replaced before the writer took them
        self.readers = 0  # times a reader opened the FIFO
        self.errors = 0
        self.thread = None
        if start:
            self.start()

    def start(self):
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="project-stream", daemon=True)
            self.thread.start()
        return self

    # -- the agent's side --

    def write(self, frame, faces):
        """Hand over the newest frame (a Frame or an image) and its event face entries; returns at once."""
        image = getattr(frame, "image", frame)
        with self.condition:
            if self.pending is not None:
                self.dropped += 1
            self.pending = (image, list(faces or []))
            self.condition.notify_all()

    def close(self, timeout=2.0):
        self.stopping.set()
        with self.condition:
            self.condition.notify_all()
        if self.thread is not None:
            self.thread.join(timeout)

    # -- the writer thread --

    def _open(self):
        """A blocking write descriptor on the FIFO once a reader has it open; None when stopping."""
        while not self.stopping.is_set():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno not in (errno.ENXIO, errno.ENOENT):
                    raise
                if exc.errno == errno.ENOENT and not ensure_fifo(self.path):
                    return None
                self.stopping.wait(self.retry_interval)
                continue
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
            self.readers += 1
            log.info("project stream: a reader opened %s", self.path)
            return fd
        return None

    def _next(self):
        with self.condition:
            while self.pending is None and not self.stopping.is_set():
                self.condition.wait(0.5)
            item, self.pending = self.pending, None
        return item

    def _jpeg(self, item):
        image, faces = item
        if self.annotate and faces:
            image = draw(image, faces)
        return encode_jpeg(image, self.resolution, self.quality)

    def _run(self):
        try:
            if not ensure_fifo(self.path):
                return
        except OSError as exc:
            log.error("project stream off: cannot create the FIFO %s (%s)", self.path, exc)
            return
        fd = None
        try:
            while not self.stopping.is_set():
                if fd is None:
                    fd = self._open()
                    if fd is None:
                        return
                item = self._next()
                if item is None:
                    continue
                try:
                    data = self._jpeg(item)
                except Exception as exc:  # a bad frame must not end the stream
                    self.errors += 1
                    log.warning("project stream: frame skipped (%s: %s)", type(exc).__name__, exc)
                    continue
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    self.written += 1
                except OSError as exc:
                    if exc.errno != errno.EPIPE:
                        self.errors += 1
                        log.warning("project stream: write failed (%s); reopening", exc)
                    else:
                        log.info("project stream: the reader went away; waiting for the next one")
                    os.close(fd)
                    fd = None
        except Exception:  # pragma: no cover - never take the Lambda down for the stream
            log.exception("project stream stopped")
        finally:
            if fd is not None:
                os.close(fd)
