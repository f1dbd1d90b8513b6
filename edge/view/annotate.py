"""Annotated output: boxes, track ids, emotions and scores drawn on frames (video or images).

Colours are legible on light and dark backgrounds (each box has a dark outline, each label a
dark backdrop); labels stay inside the frame and are moved apart when faces are close. Videos
are written at the source's frame rate in a codec browsers play where this OpenCV build has one:
``.webm`` (VP8), ``.mp4`` (H.264 when the build has an encoder for it; otherwise the file is
written as ``.webm``, or as MJPG ``.avi`` when neither exists, and the log says so), ``.avi``
(MJPG). Other paths are folders of JPEGs. Python 3.6 compatible (device code).
"""

import logging
import os
from typing import List, Optional, Tuple

import cv2
import numpy as np

log = logging.getLogger(__name__)

COLORS = {  # BGR, saturated enough to read on white and on black (with the outline)
    "neutral": (160, 160, 160),
    "happiness": (0, 200, 255),
    "surprise": (255, 170, 0),
    "sadness": (230, 80, 20),
    "anger": (30, 30, 230),
    "disgust": (40, 160, 60),
    "fear": (200, 60, 200),
    "contempt": (60, 110, 190),
}
OUTLINE = (20, 20, 20)
FONT = cv2.FONT_HERSHEY_SIMPLEX
DEFAULT_FPS = 15.0


def _fit(box, size, width, height, taken):
    """A label rectangle (x, y, w, h) near ``box`` inside the frame, not overlapping ``taken``."""
    w, h = size
    x = min(max(0, box[0]), max(0, width - w))
    y = min(max(0, box[1]), max(0, height - h))
    for _ in range(40):
        clash = [t for t in taken if x < t[0] + t[2] and t[0] < x + w and y < t[1] + t[3] and t[1] < y + h]
        if not clash:
            break
        below = max(t[1] + t[3] for t in clash) + 1
        y = below if below + h <= height else max(0, min(t[1] for t in clash) - h - 1)
        if y + h > height or y < 0:
            break
    taken.append((x, y, w, h))
    return x, y


def _label(image, text, anchor, scale, color, taken):
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    height, width = image.shape[:2]
    x, y = _fit(anchor, (tw + 4, th + base + 4), width, height, taken)
    cv2.rectangle(image, (x, y), (x + tw + 4, y + th + base + 4), OUTLINE, -1)
    cv2.putText(image, text, (x + 2, y + th + 2), FONT, scale, color, 1, cv2.LINE_AA)


def draw(image, faces):
    """Draw event face entries (box, track_id, emotion, confidence, scores) on a copy of ``image``."""
    out = image.copy()
    if out.ndim == 2:
        out = cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)
    taken = []
    for face in faces:
        x, y, w, h = face["box"]
        color = COLORS.get(face["emotion"], (0, 220, 0))
        cv2.rectangle(out, (x, y), (x + w, y + h), OUTLINE, 4)
        cv2.rectangle(out, (x, y), (x + w, y + h), color, 2)
        taken.append((x, y, w, h))
    for face in faces:
        x, y, w, h = face["box"]
        color = COLORS.get(face["emotion"], (0, 220, 0))
        label = "#{} {} {:.0%}".format(face.get("track_id", ""), face["emotion"], face["confidence"])
        _label(out, label, (x, y - 23), 0.5, color, taken)
        top = sorted(face["scores"].items(), key=lambda kv: -kv[1])[:3]
        for i, (name, p) in enumerate(top):
            _label(out, "{} {:.2f}".format(name, p), (x, y + h + 2 + 18 * i), 0.45, COLORS.get(name, color), taken)
    return out


# (fourcc, extension) to try for each requested extension, best first
CODECS = {
    ".mp4": (("avc1", ".mp4"), ("VP80", ".webm"), ("MJPG", ".avi")),
    ".webm": (("VP80", ".webm"), ("VP90", ".webm"), ("MJPG", ".avi")),
    ".mkv": (("VP80", ".mkv"), ("MJPG", ".avi")),
    ".avi": (("MJPG", ".avi"),),
}


def open_video_writer(path, fps, size):
    """(cv2.VideoWriter, path written, fourcc): the first codec this OpenCV build can write."""
    stem, ext = os.path.splitext(path)
    tried: List[str] = []
    for fourcc, out_ext in CODECS.get(ext.lower(), (("MJPG", ".avi"),)):
        target = stem + out_ext
        # cv2.VideoWriter_fourcc: in every OpenCV 4 (4.1 included), missing from opencv-python's type stubs
        writer = cv2.VideoWriter(target, cv2.VideoWriter_fourcc(*fourcc), float(fps), size)  # type: ignore[attr-defined]
        if writer.isOpened():
            if target != path:
                log.warning(
                    "annotated video: this OpenCV build cannot write %s to %s (%s); writing %s (%s) instead",
                    ", ".join(tried),
                    path,
                    "no encoder",
                    target,
                    fourcc,
                )
            return writer, target, fourcc
        writer.release()
        if os.path.exists(target):
            os.remove(target)
        tried.append(fourcc)
    raise IOError("{}: no video codec of this OpenCV build can write it (tried {})".format(path, ", ".join(tried)))


class FrameSink(object):
    """What the agent loop hands every processed frame to (a camera's sinks, ``edge.agent.assembly.Camera``).

    ``write(frame, faces)``: the Frame (index, BGR image, timestamp) and its event face entries
    (tracks with smoothed scores); it must return quickly and must not modify ``frame.image``.
    ``close()``: finish (the agent's service calls it once the loop has ended). The annotated
    writer below, the live view (``edge.view.live``) and the DeepLens project stream are sinks.
    """

    def write(self, frame, faces):
        raise NotImplementedError

    def close(self):
        pass


def letterbox(image, size):
    """``image`` scaled to fit ``size`` (width, height) without stretching, centred on black bars."""
    width, height = size
    h, w = image.shape[:2]
    scale = min(width / float(w), height / float(h))
    fit_w, fit_h = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    out = np.zeros((height, width) + image.shape[2:], image.dtype)
    x, y = (width - fit_w) // 2, (height - fit_h) // 2
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out[y : y + fit_h, x : x + fit_w] = cv2.resize(image, (fit_w, fit_h), interpolation=interpolation)
    return out


class AnnotatedWriter(FrameSink):
    """Writes annotated frames to a video (.webm/.mp4/.avi/.mkv) or, for other paths, a folder of JPEGs.

    ``fps``: the video's frame rate (the agent passes the source's; 15 when it has none).
    ``path`` is where the video was written once the first frame came (it may differ, see above).
    A video has the size of its first frame: a frame of another size (an image folder of mixed
    sizes, a camera that changed mode) is scaled to fit, with black bars (``letterboxed``), since a
    video writer drops such frames without a word. A folder keeps each frame's own size. ``frames``
    (the run summary's ``annotated_frames``): written, letterboxed, failed (JPEGs that could not be
    written); nothing is left out silently.
    """

    def __init__(self, path, fps=None):
        self.requested = path
        self.path = path
        self.fps = float(fps) if fps else DEFAULT_FPS
        self.writer = None
        self.fourcc = None
        self.size: Optional[Tuple[int, int]] = None  # (width, height) of the video
        self.is_video = path.lower().endswith(tuple(CODECS))
        if not self.is_video:
            os.makedirs(path, exist_ok=True)
        self.count = 0  # frames written
        self.letterboxed = 0
        self.failed = 0

    @property
    def frames(self):
        return {"written": self.count, "letterboxed": self.letterboxed, "failed": self.failed}

    def write(self, frame, faces):
        image = draw(frame.image, faces)
        if self.is_video:
            self._write_video(frame.index, image)
        elif not cv2.imwrite(os.path.join(self.path, "frame_{:06d}.jpg".format(frame.index)), image):
            self.failed += 1
            if self.failed == 1:
                log.warning("annotated frames %s: frame %s could not be written (disk full?)", self.path, frame.index)
            return
        self.count += 1

    def _write_video(self, index, image):
        h, w = image.shape[:2]
        if self.writer is None or self.size is None:
            self.size = (w, h)
            self.writer, self.path, self.fourcc = open_video_writer(self.requested, self.fps, self.size)
            log.info("annotated video %s: %s at %.2f fps, %dx%d", self.path, self.fourcc, self.fps, w, h)
        elif (w, h) != self.size:
            self.letterboxed += 1
            if self.letterboxed == 1:
                log.warning(
                    "annotated video %s: frame %s is %dx%d, the video %dx%d: frames of another size are "
                    "letterboxed (scaled to fit, black bars; counted in the summary's annotated_frames)",
                    self.path,
                    index,
                    w,
                    h,
                    self.size[0],
                    self.size[1],
                )
            image = letterbox(image, self.size)
        self.writer.write(image)

    def close(self):
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if self.letterboxed or self.failed:
            log.warning(
                "annotated output %s: %d frame(s) written, %d letterboxed, %d could not be written",
                self.path,
                self.count,
                self.letterboxed,
                self.failed,
            )
