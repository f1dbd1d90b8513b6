"""Annotated output: boxes, track ids, emotions and scores drawn on frames (video or images)."""

import os

import cv2

COLORS = {  # BGR
    "neutral": (200, 200, 200), "happiness": (0, 215, 255), "surprise": (255, 191, 0),
    "sadness": (255, 90, 30), "anger": (0, 0, 255), "disgust": (0, 140, 70), "fear": (180, 60, 180),
    "contempt": (90, 90, 160),
}


def draw(image, faces):
    """Draw event face entries (box, track_id, emotion, confidence, scores) on a copy of ``image``."""
    out = image.copy()
    for face in faces:
        x, y, w, h = face["box"]
        color = COLORS.get(face["emotion"], (0, 255, 0))
        cv2.rectangle(out, (x, y), (x + w, y + h), color, 2)
        label = "#{} {} {:.0%}".format(face.get("track_id", ""), face["emotion"], face["confidence"])
        _text(out, label, (x, max(14, y - 6)), 0.5, color)
        top = sorted(face["scores"].items(), key=lambda kv: -kv[1])[:3]
        for i, (name, p) in enumerate(top):
            _text(out, "{} {:.2f}".format(name, p), (x, y + h + 16 + 16 * i), 0.45, color)
    return out


def _text(image, text, origin, scale, color):
    """Text on a dark backdrop, legible on any background."""
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = origin
    cv2.rectangle(image, (x - 1, y - h - 3), (x + w + 1, y + base), (0, 0, 0), -1)
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


class AnnotatedWriter(object):
    """Writes annotated frames to a video (.mp4/.avi) or, for other paths, a folder of JPEGs."""

    def __init__(self, path, fps=15.0):
        self.path = path
        self.fps = fps
        self.writer = None
        self.is_video = path.lower().endswith((".mp4", ".avi", ".mkv"))
        if not self.is_video:
            os.makedirs(path, exist_ok=True)
        self.count = 0

    def write(self, frame, faces):
        image = draw(frame.image, faces)
        if self.is_video:
            if self.writer is None:
                fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.path.lower().endswith(".mp4") else "MJPG"))
                h, w = image.shape[:2]
                self.writer = cv2.VideoWriter(self.path, fourcc, self.fps, (w, h))
                if not self.writer.isOpened():
                    raise IOError("{}: cannot open the video writer".format(self.path))
            self.writer.write(image)
        else:
            cv2.imwrite(os.path.join(self.path, "frame_{:06d}.jpg".format(frame.index)), image)
        self.count += 1

    def close(self):
        if self.writer is not None:
            self.writer.release()
            self.writer = None
