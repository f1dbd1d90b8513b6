"""The messages an agent publishes: emotion events, status and statistics (versioned JSON).

Python 3.6 compatible, stdlib only (numpy values are accepted but numpy is not imported).
Events never carry images: only boxes, labels and scores.

Emotion event (topic ``<prefix>/<device>/events``, schema ``schema/emotion-event.schema.json``)::

    {"schema": "fer-edge/emotion-event", "schema_version": 1,
     "device_id": "cam-01", "timestamp": "2026-11-24T10:15:03.123Z", "frame": 1234,
     "model": {"id": "ferplus-cnn", "version": "3"},
     "faces": [{"track_id": 7, "box": [x, y, w, h], "emotion": "happiness",
                "confidence": 0.8123, "scores": {"neutral": 0.1, ...}}],
     "source": "camera:0"}                      # "source" is optional

``box`` is in source-frame pixels (ints, x/y >= 0, w/h >= 1), ``confidence`` is the top
probability and ``emotion`` its label; ``scores`` holds every model label, rounded to 4
decimals. Status (``.../status``, retained; also the MQTT last will) and stats
(``.../stats``) payloads have their own schemas in ``schema/``.

The MQTT publisher (``edge.mqtt_publisher.MqttPublisher``) adds two optional fields to each event it
queues: ``seq`` (1, 2, 3, ... per stream; a gap means dropped events) and ``event_id``
(``<stream>-<seq>``, the de-duplication key: delivery is at-least-once); and a ``delivery``
object to stats (outbox depth, dropped, reconnects, ...). Both are additions within
``schema_version`` 1 (see ``edge.outbox``).

Consumers should check ``schema`` and ``schema_version``; a change that is not purely additive
raises ``schema_version``.
"""

import datetime
import json
import math
import os
import time

from .labels import EMOTIONS
from .mqtt_url import check_device_id

EVENT_SCHEMA = "fer-edge/emotion-event"
STATUS_SCHEMA = "fer-edge/status"
STATS_SCHEMA = "fer-edge/stats"
SCHEMA_VERSION = 1
STATES = ("online", "offline")
SCORE_DECIMALS = 4

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema")
SCHEMA_FILES = {
    "emotion-event": "emotion-event.schema.json",
    "status": "status.schema.json",
    "stats": "stats.schema.json",
}


def schema_path(name):
    """Path of the JSON Schema ``name``: ``emotion-event``, ``status`` or ``stats``."""
    key = name
    for suffix in (".schema.json", ".json"):
        if key.endswith(suffix):
            key = key[:-len(suffix)]
    if key == "event":
        key = "emotion-event"
    if key not in SCHEMA_FILES:
        raise ValueError("unknown schema {!r}: expected one of {}".format(
            name, ", ".join(sorted(SCHEMA_FILES))))
    return os.path.join(SCHEMA_DIR, SCHEMA_FILES[key])


def load_schema(name):
    """The JSON Schema ``name`` (see :func:`schema_path`) as a dict."""
    with open(schema_path(name), "r", encoding="utf-8") as f:
        return json.load(f)


def format_timestamp(timestamp=None):
    """UTC ISO-8601 text with milliseconds and ``Z``: ``2026-11-24T10:15:03.123Z``.

    ``timestamp``: None (now), seconds since the epoch (``time.time()``), an aware
    ``datetime`` (converted to UTC) or a naive one (taken as UTC).
    """
    if timestamp is None:
        timestamp = time.time()
    if isinstance(timestamp, datetime.datetime):
        if timestamp.tzinfo is not None:
            timestamp = timestamp.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        millis = timestamp.microsecond // 1000
        return timestamp.strftime("%Y-%m-%dT%H:%M:%S") + ".{:03d}Z".format(millis)
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)):
        try:
            timestamp = float(timestamp)  # numpy scalars
        except (TypeError, ValueError):
            raise ValueError("timestamp must be None, seconds since the epoch or a datetime, "
                             "got {!r}".format(timestamp))
    if not math.isfinite(timestamp) or timestamp < 0:
        raise ValueError("timestamp {!r} is not a valid time".format(timestamp))
    total_ms = int(math.floor(timestamp * 1000.0))
    seconds, millis = divmod(total_ms, 1000)
    dt = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=seconds)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + ".{:03d}Z".format(millis)


def _to_int(value, what):
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("{} must be a number, got {!r}".format(what, value))
    if not math.isfinite(number):
        raise ValueError("{} must be finite, got {!r}".format(what, value))
    return int(round(number))


def face_entry(track_id, box, labels, probs):
    """One face of an event from the model's probability vector.

    ``box``: ``(x, y, w, h)`` in source-frame pixels (numbers; rounded to ints). A box reaching
    past the top/left edge is clipped to the frame (x, y >= 0) and w, h are kept >= 1.
    ``labels``: the model's label order (from its metadata; each must be one of
    ``edge.labels.EMOTIONS``). ``probs``: probabilities in that order (list or numpy array).
    Scores are rounded to 4 decimals; ``emotion`` is the label of the highest probability
    (the first one on ties) and ``confidence`` that probability.
    """
    labels = list(labels)
    probs = [float(p) for p in probs]
    if len(labels) != len(probs) or not labels:
        raise ValueError("face_entry: {} labels but {} probabilities".format(len(labels), len(probs)))
    for label in labels:
        if label not in EMOTIONS:
            raise ValueError("face_entry: unknown emotion label {!r} (expected one of {})".format(
                label, ", ".join(EMOTIONS)))
    if len(set(labels)) != len(labels):
        raise ValueError("face_entry: duplicate labels in {!r}".format(labels))
    scores = {}
    for label, p in zip(labels, probs):
        if not math.isfinite(p):
            raise ValueError("face_entry: probability of {!r} is {!r}".format(label, p))
        scores[label] = round(min(1.0, max(0.0, p)), SCORE_DECIMALS)
    top = max(range(len(probs)), key=lambda i: (probs[i], -i))

    try:
        x, y, w, h = box
    except (TypeError, ValueError):
        raise ValueError("face_entry: box must be (x, y, w, h), got {!r}".format(box))
    x, y = _to_int(x, "box x"), _to_int(y, "box y")
    w, h = _to_int(w, "box w"), _to_int(h, "box h")
    if x < 0:
        w, x = w + x, 0
    if y < 0:
        h, y = h + y, 0
    return {
        "track_id": _to_int(track_id, "track_id"),
        "box": [x, y, max(1, w), max(1, h)],
        "emotion": labels[top],
        "confidence": scores[labels[top]],
        "scores": scores,
    }


def make_event(device_id, frame_index, faces, model_id, model_version, timestamp=None,
               source=None):
    """An emotion event dict (see the module doc); ``faces`` are :func:`face_entry` dicts.

    ``timestamp``: when the frame was captured (None: now; see :func:`format_timestamp`).
    ``source``: optional text naming the frame source (``camera:0``, a file name, ...).
    """
    event = {
        "schema": EVENT_SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "device_id": check_device_id(device_id),
        "timestamp": format_timestamp(timestamp),
        "frame": _to_int(frame_index, "frame index"),
        "model": {"id": str(model_id), "version": str(model_version)},
        "faces": [dict(face) for face in faces],
    }
    if source is not None:
        event["source"] = str(source)
    return event


def _software_version():
    from . import __version__
    return __version__


def status_payload(device_id, state, timestamp=None, **extra):
    """Status message: ``{"schema": "fer-edge/status", "schema_version", "device_id", "state",
    "timestamp", "version", **extra}``; ``state`` is ``online`` or ``offline``.

    ``version`` is the fer-edge software version unless given in ``extra``. Extra keys
    (e.g. ``reason="connection-lost"``, ``model="ferplus-cnn"``) must be JSON values.
    """
    if state not in STATES:
        raise ValueError("status state must be one of {}, got {!r}".format(", ".join(STATES), state))
    payload = {
        "schema": STATUS_SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "device_id": check_device_id(device_id),
        "state": state,
        "timestamp": format_timestamp(timestamp),
        "version": _software_version(),
    }
    for key, value in extra.items():
        if key in ("schema", "schema_version", "device_id", "state", "timestamp"):
            raise ValueError("status_payload: {!r} cannot be overridden".format(key))
        payload[key] = value
    payload["version"] = str(payload["version"])
    return payload


def stats_payload(device_id, fps, stage_ms, frames, faces, extra=None, timestamp=None, delivery=None):
    """Agent statistics: ``{"schema": "fer-edge/stats", "schema_version", "device_id",
    "timestamp", "fps", "stage_ms": {stage: ms}, "frames", "faces"[, "extra": {...}]}``.

    ``fps``: processed frames per second; ``stage_ms``: mean milliseconds per pipeline stage
    (e.g. ``{"capture": 2.1, "detect": 11.0, "classify": 4.2, "publish": 0.3}``);
    ``frames``/``faces``: totals since start; ``extra``: a free-form JSON object;
    ``delivery``: the publisher's outbox state (``MqttPublisher.delivery()``; the publisher adds
    it to stats it queues when it is missing).
    """
    payload = {
        "schema": STATS_SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "device_id": check_device_id(device_id),
        "timestamp": format_timestamp(timestamp),
        "fps": round(float(fps), 3),
        "stage_ms": dict((str(k), round(float(v), 3)) for k, v in dict(stage_ms or {}).items()),
        "frames": _to_int(frames, "frames"),
        "faces": _to_int(faces, "faces"),
    }
    if extra is not None:
        if not isinstance(extra, dict):
            raise ValueError("stats_payload: extra must be a dict, got {}".format(
                type(extra).__name__))
        payload["extra"] = dict(extra)
    if delivery is not None:
        payload["delivery"] = dict(delivery)
    return payload


def _json_default(obj):
    # numpy scalars and arrays, without importing numpy
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError("{} is not JSON serializable".format(type(obj).__name__))


def to_json(obj):
    """Compact JSON text with sorted keys (NaN/Infinity are refused: ValueError)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False,
                      default=_json_default)
