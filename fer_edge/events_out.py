"""`fer-edge run --events-out FILE`: a video's results as a file, beside (or instead of) MQTT.

``.jsonl``: one emotion event per line, exactly what the agent publishes (schema
``edge/events/schema/emotion-event.schema.json``). ``.csv``: one row per face and frame (frame, time,
track id, box, emotion, confidence, the score of every label), like the ``fer`` package's video
analysis. Written through a temporary name and renamed into place when the run ends, so a file
with this name is always complete.

The face tracks (``new``/``update``/``end`` messages, ``edge/events/schema/track.schema.json``) go to a
file beside it, ``<name>.tracks.jsonl`` (``results.jsonl`` -> ``results.tracks.jsonl``, ``faces.csv``
-> ``faces.tracks.jsonl``), one message per line as published; it is written only when the agent
publishes tracks (``track_events``, on by default). Its ``end`` lines are a summary per face: how
long it was seen, its dominant emotion and the share of each emotion.
"""

import csv
import io
import json
import os
from typing import Any, TextIO

from edge.delivery.base import Publisher, PublisherWrapper
from edge.labels import EMOTIONS

CSV_FIELDS = ["frame", "timestamp", "device_id", "track_id", "x", "y", "w", "h", "emotion", "confidence"] + list(
    EMOTIONS
)
FORMATS = (".jsonl", ".csv")


def tracks_path(path: str | os.PathLike[str]) -> str:
    """The track file beside an events file: ``<path without .jsonl/.csv>.tracks.jsonl``."""
    return os.path.splitext(str(path))[0] + ".tracks.jsonl"


def check_path(path: str) -> str:
    """ValueError unless ``path`` ends in .jsonl or .csv and its folder can be written."""
    if not str(path).endswith(FORMATS):
        raise ValueError("--events-out {}: the file must end in .jsonl or .csv".format(path))
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError("--events-out {}: folder {} does not exist".format(path, folder))
    return path


class EventFileWriter(PublisherWrapper):
    """Wraps the agent's publisher and also writes every event to a .jsonl or .csv file."""

    def __init__(self, inner: Publisher, path: str):
        PublisherWrapper.__init__(self, inner)
        self.path = check_path(path)
        self.tmp = self.path + ".partial"
        self.handle = io.open(self.tmp, "w", encoding="utf-8", newline="")
        self.csv = None
        if self.path.endswith(".csv"):
            self.csv = csv.DictWriter(self.handle, fieldnames=CSV_FIELDS)
            self.csv.writeheader()
        self.events = self.rows = self.tracks = 0
        self.tracks_path = tracks_path(self.path)
        self._tracks_handle: TextIO | None = None  # opened with the first track message

    def publish_event(self, event: dict[str, Any]) -> bool:
        accepted = self.inner.publish_event(event)
        self.events += 1
        if self.csv is None:
            self.handle.write(json.dumps(event, sort_keys=True) + "\n")
            return accepted
        for face in event.get("faces", []):
            x, y, w, h = face["box"]
            row = {
                "frame": event.get("frame"),
                "timestamp": event.get("timestamp"),
                "device_id": event.get("device_id"),
                "track_id": face.get("track_id"),
                "x": x,
                "y": y,
                "w": w,
                "h": h,
                "emotion": face["emotion"],
                "confidence": face["confidence"],
            }
            row.update(face.get("scores", {}))
            self.csv.writerow(row)
            self.rows += 1
        return accepted

    def publish_track(self, message: dict[str, Any]) -> bool:
        accepted = self.inner.publish_track(message)
        if self._tracks_handle is None:
            self._tracks_handle = io.open(self.tracks_path + ".partial", "w", encoding="utf-8", newline="")
        self._tracks_handle.write(json.dumps(message, sort_keys=True) + "\n")
        self.tracks += 1
        return accepted

    def close(self, timeout: float | None = None) -> None:
        try:
            PublisherWrapper.close(self, timeout)
        finally:
            if not self.handle.closed:
                self.handle.close()
                os.replace(self.tmp, self.path)
            if self._tracks_handle is not None and not self._tracks_handle.closed:
                self._tracks_handle.close()
                os.replace(self.tracks_path + ".partial", self.tracks_path)
