"""Emotion event, status and stats payloads against their JSON Schemas (edge/events/schema/)."""

import copy
import datetime
import json
import re

import numpy as np
import pytest

jsonschema = pytest.importorskip("jsonschema")

from edge.events.payloads import (  # noqa: E402 (after the importorskip above)
    EVENT_SCHEMA,
    EVENT_SCHEMA_VERSION,
    SCHEMA_VERSION,
    face_entry,
    format_timestamp,
    load_schema,
    make_event,
    schema_path,
    state_payload,
    stats_payload,
    status_payload,
    to_json,
    track_message,
)
from edge.labels import EMOTIONS  # noqa: E402

TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
PROBS = [0.05, 0.7, 0.1, 0.05, 0.04, 0.03, 0.02, 0.01]


def validator(name):
    schema = load_schema(name)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())


def errors(name, obj):
    return [e.message for e in validator(name).iter_errors(obj)]


def sample_event(**kwargs):
    faces = [
        face_entry(7, (10, 20, 48, 50), EMOTIONS, PROBS),
        face_entry(8, np.array([100.4, 0, 30.6, 31]), EMOTIONS, np.array(PROBS[::-1], np.float32)),
    ]
    args = dict(
        device_id="cam-01",
        frame_index=1234,
        faces=faces,
        model_id="ferplus-cnn",
        model_version="3",
        timestamp=1795515303.1239,
        source="camera:0",
    )
    args.update(kwargs)
    return make_event(**args)


def test_schema_files_are_valid_draft07():
    for name in ("emotion-event", "status", "stats", "track", "state"):
        assert schema_path(name).endswith(name + ".schema.json")
        validator(name)
    assert schema_path("emotion-event.schema.json") == schema_path("emotion-event")
    with pytest.raises(ValueError, match="unknown schema"):
        schema_path("nope")


def test_schema_emotion_enum_is_the_label_list():
    schema = load_schema("emotion-event")
    assert tuple(schema["definitions"]["emotion"]["enum"]) == EMOTIONS


def test_made_event_matches_schema_and_layout():
    event = sample_event()
    assert errors("emotion-event", event) == []
    assert event["schema"] == EVENT_SCHEMA and event["schema_version"] == EVENT_SCHEMA_VERSION == 2
    assert SCHEMA_VERSION == 1  # status and stats
    assert event["timestamp"] == "2026-11-24T10:15:03.123Z"
    assert event["frame"] == 1234 and event["model"] == {"id": "ferplus-cnn", "version": "3"}
    assert event["source"] == "camera:0"
    face = event["faces"][0]
    assert face == {
        "track_id": 7,
        "box": [10, 20, 48, 50],
        "emotion": "happiness",
        "confidence": 0.7,
        "scores": dict(zip(EMOTIONS, PROBS)),
    }
    # numpy inputs become plain JSON numbers; float32 scores rounded to 4 decimals
    second = event["faces"][1]
    assert second["box"] == [100, 0, 31, 31] and second["emotion"] == "fear"
    assert all(type(v) is float for v in second["scores"].values())
    assert second["scores"]["happiness"] == 0.02 and second["confidence"] == 0.7
    text = to_json(event)
    assert json.loads(text) == event
    assert " " not in text.replace("camera:0", "") and text.startswith('{"device_id":')
    assert "source" not in sample_event(source=None)


def test_event_without_faces_is_valid():
    assert errors("emotion-event", sample_event(faces=[])) == []


def test_face_entry_rules():
    face = face_entry(1, (-3, -2, 20, 10), EMOTIONS, [0.5, 0.5, 0, 0, 0, 0, 0, 0])
    assert face["box"] == [0, 0, 17, 8]  # clipped at the frame's top-left corner
    assert face["emotion"] == "neutral"  # first of equal maxima
    assert face_entry(1, (0, 0, 0.2, 0), EMOTIONS, PROBS)["box"] == [0, 0, 1, 1]
    assert face_entry(2, (0, 0, 5, 5), EMOTIONS, [0.123456] + [0.0] * 7)["confidence"] == 0.1235
    sub = face_entry(3, (0, 0, 5, 5), ("neutral", "anger"), [0.2, 0.8])
    assert sub["emotion"] == "anger" and sub["scores"] == {"neutral": 0.2, "anger": 0.8}
    with pytest.raises(ValueError, match="unknown emotion label 'joy'"):
        face_entry(1, (0, 0, 5, 5), ("joy", "anger"), [0.5, 0.5])
    with pytest.raises(ValueError, match="8 labels but 7"):
        face_entry(1, (0, 0, 5, 5), EMOTIONS, PROBS[:7])
    with pytest.raises(ValueError, match="nan"):
        face_entry(1, (0, 0, 5, 5), EMOTIONS, [float("nan")] + PROBS[1:])
    with pytest.raises(ValueError, match="box"):
        face_entry(1, (0, 0, 5), EMOTIONS, PROBS)


@pytest.mark.parametrize(
    "mutate, expect",
    [
        (lambda e: e["faces"][0].__setitem__("emotion", "joy"), "joy"),
        (lambda e: e["faces"][0]["scores"].__setitem__("joy", 0.1), "joy"),
        (lambda e: e["faces"][0].__setitem__("box", [-1, 0, 10, 10]), "-1"),
        (lambda e: e["faces"][0].__setitem__("box", [0, 0, 0, 10]), "0"),
        (lambda e: e["faces"][0].__setitem__("box", [0, 0, 10]), "short"),
        (lambda e: e["faces"][0].__setitem__("box", [0, 0, 10, 10.5]), "10.5"),
        (lambda e: e["faces"][0].__setitem__("confidence", 1.5), "1.5"),
        (lambda e: e["faces"][0].__setitem__("image", "AAAA"), "image"),
        (lambda e: e["faces"][0].pop("track_id"), "track_id"),
        (lambda e: e.pop("timestamp"), "timestamp"),
        (lambda e: e.pop("model"), "model"),
        (lambda e: e.__setitem__("timestamp", "2026-11-24 10:15:03"), "2026-11-24 10:15:03"),
        (lambda e: e.__setitem__("timestamp", "2026-11-24T10:15:03Z"), "2026-11-24T10:15:03Z"),
        (lambda e: e.__setitem__("schema_version", 3), "is not one of [1, 2]"),
        (lambda e: e.__setitem__("device_id", "cam/1"), "cam/1"),
        (lambda e: e.__setitem__("frame", -1), "-1"),
        (lambda e: e.__setitem__("jpeg", "..."), "jpeg"),
    ],
    ids=[
        "unknown-emotion",
        "unknown-score-label",
        "negative-box",
        "zero-width",
        "short-box",
        "float-box",
        "confidence-over-1",
        "face-image",
        "missing-track-id",
        "missing-timestamp",
        "missing-model",
        "timestamp-space",
        "timestamp-no-millis",
        "schema-version",
        "device-id-slash",
        "negative-frame",
        "event-image",
    ],
)
def test_bad_events_are_rejected(mutate, expect):
    event = copy.deepcopy(sample_event())
    mutate(event)
    found = errors("emotion-event", event)
    assert found, "schema accepted a bad event"
    assert any(expect in m for m in found), found


def test_timestamp_format():
    assert TS_RE.match(format_timestamp())
    assert format_timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert format_timestamp(1795515303.9999) == "2026-11-24T10:15:03.999Z"  # truncated, no 1000 ms
    utc = datetime.timezone.utc
    assert (
        format_timestamp(datetime.datetime(2026, 11, 24, 10, 15, 3, 123456, tzinfo=utc)) == "2026-11-24T10:15:03.123Z"
    )
    cet = datetime.timezone(datetime.timedelta(hours=1))
    assert format_timestamp(datetime.datetime(2026, 11, 24, 11, 15, 3, tzinfo=cet)) == "2026-11-24T10:15:03.000Z"
    for bad in (float("nan"), -1, "yesterday"):
        with pytest.raises(ValueError):
            format_timestamp(bad)


def test_event_arguments_are_checked():
    with pytest.raises(ValueError, match="wildcard"):
        sample_event(device_id="cam+1")
    with pytest.raises(ValueError, match="empty"):
        sample_event(device_id="")
    with pytest.raises(ValueError):
        to_json({"x": float("nan")})


def test_status_and_stats_payloads_match_schemas():
    online = status_payload("cam-01", "online", model="ferplus-cnn")
    offline = status_payload("cam-01", "offline", reason="shutdown")
    for payload in (online, offline):
        assert errors("status", json.loads(to_json(payload))) == []
    assert online["state"] == "online" and online["model"] == "ferplus-cnn"
    assert TS_RE.match(online["timestamp"]) and isinstance(online["version"], str)
    with pytest.raises(ValueError, match="state"):
        status_payload("cam-01", "sleeping")
    assert errors("status", dict(online, state="sleeping"))

    stats = stats_payload(
        "cam-01",
        np.float32(14.25),
        {"detect": 11.0, "classify": np.float64(4.2)},
        frames=300,
        faces=120,
        extra={"queue": 0},
    )
    assert errors("stats", json.loads(to_json(stats))) == []
    assert stats["fps"] == 14.25 and stats["stage_ms"] == {"detect": 11.0, "classify": 4.2}
    assert stats["extra"] == {"queue": 0}
    assert errors("stats", dict(stats, fps=-1))
    assert errors("stats", dict(stats, unknown=1))


def test_optional_delivery_fields_match_schemas():
    """seq/event_id (events) and delivery (stats): optional additions within schema_version 1."""
    event = dict(sample_event(), seq=42, event_id="9f2c4e1a7b3d5e60-42")
    assert errors("emotion-event", json.loads(to_json(event))) == []
    assert errors("emotion-event", dict(event, seq=0))
    assert errors("emotion-event", dict(event, seq="42"))
    assert errors("emotion-event", dict(event, event_id="no id"))
    delivery = {
        "queued": 3,
        "queued_bytes": 2100,
        "dropped": 0,
        "failed": 0,
        "acknowledged": 10,
        "reconnects": 1,
        "disconnects": 1,
        "connected": True,
        "storage": "disk",
    }
    stats = stats_payload("cam-01", 30.0, {}, 10, 20, delivery=delivery)
    assert stats["delivery"] == delivery and errors("stats", json.loads(to_json(stats))) == []
    assert errors("stats", dict(stats, delivery=dict(delivery, queued=-1)))
    assert errors("stats", dict(stats, delivery=dict(delivery, storage="cloud")))
    assert errors("stats", dict(stats, delivery={"queued": 1}))  # dropped and reconnects are required


def test_stable_emotion_in_a_face_and_version_1_events_still_validate():
    """Version 2: emotion is the track's stable label, confidence its score, top_emotion the top label."""
    face = face_entry(7, (10, 20, 48, 50), EMOTIONS, PROBS, emotion="surprise")
    assert face["emotion"] == "surprise" and face["confidence"] == 0.1 and face["top_emotion"] == "happiness"
    assert face_entry(7, (10, 20, 48, 50), EMOTIONS, PROBS, emotion=1) == dict(
        face_entry(7, (10, 20, 48, 50), EMOTIONS, PROBS), top_emotion="happiness"
    )
    event = sample_event(faces=[face])
    assert errors("emotion-event", event) == []
    assert (
        errors("emotion-event", dict(event, schema_version=1, faces=[face_entry(7, (10, 20, 48, 50), EMOTIONS, PROBS)]))
        == []
    )
    bad = copy.deepcopy(event)
    bad["faces"][0]["top_emotion"] = "joy"
    assert errors("emotion-event", bad)
    with pytest.raises(ValueError, match="'joy' is not one of the model's labels"):
        face_entry(7, (10, 20, 48, 50), EMOTIONS, PROBS, emotion="joy")
    with pytest.raises(ValueError, match="emotion index 8 is outside 0..7"):
        face_entry(7, (10, 20, 48, 50), EMOTIONS, PROBS, emotion=8)


def track_state(**changes):
    state = {
        "id": "0a1b2c3d-7",
        "track_id": 7,
        "box": [1, 2, 30, 30],
        "emotion": "happiness",
        "confidence": 0.7,
        "top_emotion": "happiness",
        "scores": dict(zip(EMOTIONS, PROBS)),
        "start_time": "2026-11-24T10:15:03.123Z",
        "end_time": None,
        "first_frame": 3,
        "last_frame": 9,
        "frames": 7,
        "missed": 0,
        "duration": 0.2,
        "dominant_emotion": "happiness",
        "emotion_shares": {"happiness": 1.0},
        "emotion_changes": 0,
    }
    state.update(changes)
    return state


def test_track_messages_and_the_state_match_their_schemas():
    new = track_message("new", "cam-01", 9, track_state(), track_state(), "m", "1", timestamp=1795515303.1)
    assert errors("track", new) == [] and new["message_id"] == "0a1b2c3d-7-1" and "reason" not in new
    end = track_message(
        "end",
        "cam-01",
        30,
        track_state(),
        track_state(end_time="2026-11-24T10:15:04.000Z", missed=16),
        "m",
        "1",
        reason="gone",
        number=2,
        source="camera:0",
    )
    assert errors("track", end) == [] and end["reason"] == "gone" and end["source"] == "camera:0"
    assert errors("track", dict(end, reason=None))
    assert errors("track", dict(new, reason="gone"))  # a reason only on end
    assert errors("track", dict(end, after=track_state()))  # an end has its end_time
    assert errors("track", dict(new, type="moved"))
    with pytest.raises(ValueError, match="a reason"):
        track_message("end", "cam-01", 30, track_state(), track_state(), "m", "1")
    with pytest.raises(ValueError, match="track message type"):
        track_message("gone", "cam-01", 30, track_state(), track_state(), "m", "1")
    state = state_payload("cam-01", 3, {"happiness": 2, "neutral": 1, "fear": 0}, np.float32(14.257), ["0a1b2c3d-7"])
    assert errors("state", json.loads(to_json(state))) == []
    assert state["dominant_emotion"] == "happiness" and state["emotions"] == {"happiness": 2, "neutral": 1}
    assert state["fps"] == 14.26
    empty = state_payload("cam-01", 0, {}, 0.0)
    assert empty["dominant_emotion"] == "none" and errors("state", empty) == []
    tie = state_payload("cam-01", 2, {"sadness": 1, "neutral": 1}, 1.0)
    assert tie["dominant_emotion"] == "neutral"  # ties: the first in the label order
    with pytest.raises(ValueError, match="unknown emotion 'joy'"):
        state_payload("cam-01", 1, {"joy": 1}, 1.0)
