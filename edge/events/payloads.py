"""The messages an agent publishes: emotion events, face tracks, device state, status and statistics
(versioned JSON).

Python 3.6 compatible, stdlib only (numpy values are accepted but numpy is not imported).
Messages never carry images: only boxes, labels and scores.

Emotion event (topic ``<prefix>/<device>/events``, schema ``schema/emotion-event.schema.json``)::

    {"schema": "fer-edge/emotion-event", "schema_version": 2,
     "device_id": "cam-01", "timestamp": "2026-11-24T10:15:03.123Z", "frame": 1234,
     "model": {"id": "ferplus-cnn", "version": "3"},
     "faces": [{"track_id": 7, "box": [x, y, w, h], "emotion": "happiness",
                "confidence": 0.8123, "top_emotion": "happiness", "scores": {"neutral": 0.1, ...}}],
     "source": "camera:0"}                      # "source" is optional

``box`` is in source-frame pixels (ints, x/y >= 0, w/h >= 1); ``scores`` holds every model label,
rounded to 4 decimals. ``emotion`` is the track's *stable* emotion (changed with hysteresis,
:mod:`edge.tracking.track`) and ``confidence`` its score; ``top_emotion`` is the label of the highest score
in this frame. They differ only while another emotion is taking over (or flickering, on an
ambiguous face). Schema version 1 (agents before the hysteresis) had no ``top_emotion`` and its
``emotion`` was always the top label: ``emotion`` changing meaning is why the version is 2.
``face_entry`` without a stable label gives a version-1 style face (emotion = top label).

Face track (``<prefix>/<device>/tracks``, ``schema/track.schema.json``): ``new`` when a face has
been seen in ``confirm_frames`` frames, ``update`` when its stable emotion changes, ``end`` when it
is gone; ``before``/``after`` hold the track's state at the previous message and now (like
Frigate's events). See :mod:`edge.tracking.lifecycle`.

Device state (``<prefix>/<device>/state``, retained, ``schema/state.schema.json``): faces in view,
their dominant emotion, frames per second. Schema version 2: ``faces`` counts the faces seen now
(version 1 counted coasting tracks too), ``coasting`` counts those, ``fps`` is absent until measured. Status (``.../status``, retained; also the MQTT last
will) and stats (``.../stats``) payloads have their own schemas in ``schema/``.

The MQTT publisher (``edge.delivery.mqtt.MqttPublisher``) adds two optional fields to each event it
queues: ``seq`` (1, 2, 3, ... per stream; a gap means dropped events) and ``event_id``
(``<stream>-<seq>``, the de-duplication key: delivery is at-least-once); and a ``delivery``
object to stats (outbox depth, dropped, reconnects, ...). Both are additions within their
schema versions (see ``edge.delivery.outbox``).

Consumers should check ``schema`` and ``schema_version``; a change that is not purely additive
raises ``schema_version``.
"""

import datetime
import json
import math
import os
import time

from edge.delivery.url import check_device_id
from edge.labels import EMOTIONS
from edge.version import __version__

EVENT_SCHEMA = "fer-edge/emotion-event"
STATUS_SCHEMA = "fer-edge/status"
STATS_SCHEMA = "fer-edge/stats"
TRACK_SCHEMA = "fer-edge/track"
STATE_SCHEMA = "fer-edge/state"
SCHEMA_VERSION = 1  # status and stats
EVENT_SCHEMA_VERSION = 2  # emotion events: 2 since emotion is the stable (hysteresis) label
TRACK_SCHEMA_VERSION = 1
STATE_SCHEMA_VERSION = 2  # 2: faces seen now (coasting tracks apart), fps absent until measured
TRACK_TYPES = ("new", "update", "end")
END_REASONS = ("gone", "stopped")
STATES = ("online", "offline")
SCORE_DECIMALS = 4

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema")
SCHEMA_FILES = {
    "emotion-event": "emotion-event.schema.json",
    "status": "status.schema.json",
    "stats": "stats.schema.json",
    "track": "track.schema.json",
    "state": "state.schema.json",
}


def schema_path(name):
    """Path of the JSON Schema ``name``: ``emotion-event``, ``track``, ``state``, ``status`` or ``stats``."""
    key = name
    for suffix in (".schema.json", ".json"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    if key == "event":
        key = "emotion-event"
    if key not in SCHEMA_FILES:
        raise ValueError("unknown schema {!r}: expected one of {}".format(name, ", ".join(sorted(SCHEMA_FILES))))
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
            raise ValueError(
                "timestamp must be None, seconds since the epoch or a datetime, got {!r}".format(timestamp)
            ) from None
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
        raise ValueError("{} must be a number, got {!r}".format(what, value)) from None
    if not math.isfinite(number):
        raise ValueError("{} must be finite, got {!r}".format(what, value))
    return int(round(number))


def face_entry(track_id, box, labels, probs, emotion=None):
    """One face of an event from the model's probability vector.

    ``box``: ``(x, y, w, h)`` in source-frame pixels (numbers; rounded to ints). A box reaching
    past the top/left edge is clipped to the frame (x, y >= 0) and w, h are kept >= 1.
    ``labels``: the model's label order (from its metadata; each must be one of
    ``edge.labels.EMOTIONS``). ``probs``: probabilities in that order (list or numpy array).
    Scores are rounded to 4 decimals. Without ``emotion``, ``emotion`` is the label of the highest
    probability (the first one on ties) and ``confidence`` that probability. With ``emotion`` (the
    track's stable label: a label or its index in ``labels``), ``emotion`` is that label,
    ``confidence`` its score, and ``top_emotion`` the label of the highest probability.
    """
    labels = list(labels)
    probs = [float(p) for p in probs]
    if len(labels) != len(probs) or not labels:
        raise ValueError("face_entry: {} labels but {} probabilities".format(len(labels), len(probs)))
    for label in labels:
        if label not in EMOTIONS:
            raise ValueError(
                "face_entry: unknown emotion label {!r} (expected one of {})".format(label, ", ".join(EMOTIONS))
            )
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
        raise ValueError("face_entry: box must be (x, y, w, h), got {!r}".format(box)) from None
    x, y = _to_int(x, "box x"), _to_int(y, "box y")
    w, h = _to_int(w, "box w"), _to_int(h, "box h")
    if x < 0:
        w, x = w + x, 0
    if y < 0:
        h, y = h + y, 0
    face = {
        "track_id": _to_int(track_id, "track_id"),
        "box": [x, y, max(1, w), max(1, h)],
        "emotion": labels[top],
        "confidence": scores[labels[top]],
        "scores": scores,
    }
    if emotion is not None:
        stable = _label_of(emotion, labels)
        face["emotion"] = stable
        face["confidence"] = scores[stable]
        face["top_emotion"] = labels[top]
    return face


def _label_of(emotion, labels):
    """A label from a label or its index in ``labels`` (ValueError naming it otherwise)."""
    if isinstance(emotion, str):
        if emotion not in labels:
            raise ValueError("face_entry: emotion {!r} is not one of the model's labels {}".format(emotion, labels))
        return emotion
    index = _to_int(emotion, "emotion index")
    if not 0 <= index < len(labels):
        raise ValueError("face_entry: emotion index {} is outside 0..{}".format(index, len(labels) - 1))
    return labels[index]


def make_event(device_id, frame_index, faces, model_id, model_version, timestamp=None, source=None):
    """An emotion event dict (see the module doc); ``faces`` are :func:`face_entry` dicts.

    ``timestamp``: when the frame was captured (None: now; see :func:`format_timestamp`).
    ``source``: optional text naming the frame source (``camera:0``, a file name, ...).
    """
    event = {
        "schema": EVENT_SCHEMA,
        "schema_version": EVENT_SCHEMA_VERSION,
        "device_id": check_device_id(device_id),
        "timestamp": format_timestamp(timestamp),
        "frame": _to_int(frame_index, "frame index"),
        "model": {"id": str(model_id), "version": str(model_version)},
        "faces": [dict(face) for face in faces],
    }
    if source is not None:
        event["source"] = str(source)
    return event


def track_message(
    kind,
    device_id,
    frame_index,
    before,
    after,
    model_id,
    model_version,
    timestamp=None,
    source=None,
    reason=None,
    number=1,
):
    """A face-track message (see the module doc and ``schema/track.schema.json``).

    ``kind``: ``new``, ``update`` or ``end``; ``before``/``after``: track-state dicts
    (:class:`edge.tracking.lifecycle.TrackLifecycle` makes them); ``reason`` (``end`` only): ``gone`` (not seen
    for more than ``max_missed`` frames) or ``stopped`` (the agent stopped, or its source ended);
    ``number``: 1 for ``new``, then 2, 3, ... per track: ``message_id`` is ``<track id>-<number>``,
    the de-duplication key (delivery is at-least-once).
    """
    if kind not in TRACK_TYPES:
        raise ValueError("track message type must be one of {}, got {!r}".format(", ".join(TRACK_TYPES), kind))
    if (kind == "end") != (reason is not None):
        raise ValueError(
            "track message: a reason ({}) goes with type end, and only there".format(", ".join(END_REASONS))
        )
    if reason is not None and reason not in END_REASONS:
        raise ValueError("track end reason must be one of {}, got {!r}".format(", ".join(END_REASONS), reason))
    message = {
        "schema": TRACK_SCHEMA,
        "schema_version": TRACK_SCHEMA_VERSION,
        "type": kind,
        "device_id": check_device_id(device_id),
        "timestamp": format_timestamp(timestamp),
        "frame": _to_int(frame_index, "frame index"),
        "model": {"id": str(model_id), "version": str(model_version)},
        "id": str(after["id"]),
        "message_id": "{}-{}".format(after["id"], _to_int(number, "message number")),
        "before": dict(before),
        "after": dict(after),
    }
    if reason is not None:
        message["reason"] = reason
    if source is not None:
        message["source"] = str(source)
    return message


def state_payload(device_id, faces, emotions, fps, tracks=(), timestamp=None, coasting=0):
    """The retained device state: ``{"schema": "fer-edge/state", "schema_version", "device_id",
    "timestamp", "faces", "dominant_emotion", "emotions", "fps", "tracks", "coasting"}``.

    ``faces``: faces in view now (confirmed tracks seen in the last few frames,
    :mod:`edge.tracking.lifecycle`); ``emotions``: ``{label: count}`` of their stable emotions;
    ``dominant_emotion``: the most frequent of them (``none`` without faces; ties: the first in
    ``edge.labels.EMOTIONS``); ``fps``: frames per second processed lately, rounded to 0.01 (None:
    not measured yet, and then the key is left out: no made-up 0); ``tracks``: the ids of the faces
    in view; ``coasting``: confirmed tracks not seen lately that the tracker still keeps.
    """
    counts = {}
    for label, count in dict(emotions).items():
        if label not in EMOTIONS:
            raise ValueError("state_payload: unknown emotion {!r}".format(label))
        if _to_int(count, "emotion count") > 0:
            counts[label] = _to_int(count, "emotion count")
    dominant = max(counts, key=lambda k: (counts[k], -EMOTIONS.index(k))) if counts else "none"
    state = {
        "schema": STATE_SCHEMA,
        "schema_version": STATE_SCHEMA_VERSION,
        "device_id": check_device_id(device_id),
        "timestamp": format_timestamp(timestamp),
        "faces": _to_int(faces, "faces"),
        "dominant_emotion": dominant,
        "emotions": counts,
        "tracks": [str(t) for t in tracks],
        "coasting": max(0, _to_int(coasting, "coasting")),
    }
    if fps is not None:
        state["fps"] = round(max(0.0, float(fps)), 2)
    return state


def _software_version():
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
            raise ValueError("stats_payload: extra must be a dict, got {}".format(type(extra).__name__))
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
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_json_default)
