"""Jetson camera check: open the configured source, grab one frame, report its resolution.

Frame sources themselves are ``edge.agent.sources`` (``csi://0?width=1280&height=720&framerate=30``
builds the nvarguscamerasrc pipeline); this module only adds what helps on a Jetson: a one-shot
check (``python3 -m jetson --check-camera``) and hints when the camera does not deliver.

Python 3.6 compatible (device code).
"""

import collections
import glob
import os
import time

import cv2

from edge.agent.sources import SourceError, has_gstreamer, open_source

CameraReport = collections.namedtuple("CameraReport", "uri width height channels seconds opencv gstreamer")

SYSTEM_CV2_DIR = "/usr/lib/python3/dist-packages"


def opencv_summary():
    """'OpenCV 4.1.1 (/usr/lib/python3/dist-packages/cv2...), GStreamer YES'."""
    return "OpenCV {} ({}), GStreamer {}".format(
        cv2.__version__, getattr(cv2, "__file__", "?"), "YES" if has_gstreamer() else "NO"
    )


def gstreamer_hint(cv2_file=None, gstreamer=None):
    """What to do when this OpenCV cannot open CSI cameras (None when it has GStreamer)."""
    gstreamer = has_gstreamer() if gstreamer is None else gstreamer
    if gstreamer:
        return None
    cv2_file = cv2_file or getattr(cv2, "__file__", "?")
    hint = (
        "this OpenCV ({}) is built without GStreamer, which CSI cameras (nvarguscamerasrc) need. Use "
        "JetPack's OpenCV (apt package python3-opencv, in {})".format(cv2_file, SYSTEM_CV2_DIR)
    )
    if SYSTEM_CV2_DIR not in str(cv2_file):
        hint += (
            ": the pip wheel shadows it, remove it with `pip3 uninstall opencv-python "
            "opencv-python-headless` (pip wheels never include GStreamer)"
        )
    return hint


def camera_hints(uri, video_devices=None, cv2_file=None, gstreamer=None):
    """Hints (list of lines) for a camera that could not be opened or gave no frame."""
    uri = str(uri)
    hints = []
    devices = sorted(glob.glob("/dev/video*")) if video_devices is None else list(video_devices)
    if uri.startswith("csi://"):
        hint = gstreamer_hint(cv2_file, gstreamer)
        if hint:
            hints.append(hint)
        hints.append(
            "test the sensor without Python: `gst-launch-1.0 nvarguscamerasrc sensor-id=0 num-buffers=30 "
            "! fakesink` (or `nvgstcapture-1.0`); after a failed run restart the Argus daemon: "
            "`sudo systemctl restart nvargus-daemon`"
        )
        hints.append(
            "check the ribbon cable (contacts towards the heat sink on the Nano) and the sensor id "
            "(csi://0 or csi://1 on the B01 carrier board)"
        )
    elif uri.isdigit() or uri.startswith("v4l2://"):
        hints.append(
            "video devices here: {}".format(
                ", ".join(devices) if devices else "none (/dev/video* missing: camera not connected?)"
            )
        )
        hints.append("list formats with `v4l2-ctl --list-formats-ext -d /dev/video0` (apt install v4l-utils)")
    if uri.isdigit() or uri.startswith(("v4l2://", "csi://")):
        hints.append("the service user must be in group 'video' (`id fer-edge`); no other process may hold the camera")
    return hints


def check_camera(uri, timeout=10.0):
    """Open ``uri`` (an ``edge.agent.sources`` URI), read one frame, return a CameraReport.

    Raises SourceError with Jetson-specific hints when the source cannot be opened or gives no
    frame within ``timeout`` seconds.
    """
    started = time.time()
    try:
        source = open_source(uri)
    except SourceError as exc:
        hints = [h for h in camera_hints(uri) if "GStreamer" not in h or "GStreamer" not in str(exc)]
        raise SourceError("\n  ".join([str(exc)] + hints)) from exc
    try:
        frame = source.read(timeout) if source.live else source.read()
    finally:
        source.close()
    if frame is None:
        raise SourceError(
            "\n  ".join(["{}: opened, but no frame within {:.0f} s".format(uri, timeout)] + camera_hints(uri))
        )
    image = frame.image
    channels = image.shape[2] if image.ndim == 3 else 1
    return CameraReport(
        str(uri),
        int(image.shape[1]),
        int(image.shape[0]),
        int(channels),
        round(time.time() - started, 3),
        cv2.__version__,
        has_gstreamer(),
    )


def format_report(report):
    return "camera OK: {} gives {}x{} frames ({} channel{}), first frame after {:.2f} s; {}".format(
        report.uri,
        report.width,
        report.height,
        report.channels,
        "" if report.channels == 1 else "s",
        report.seconds,
        opencv_summary(),
    )


def video_devices():
    """/dev/video* present here (for logs)."""
    return sorted(p for p in glob.glob("/dev/video*") if os.path.exists(p))
