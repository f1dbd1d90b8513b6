"""Consumers against hostile payloads (issue 23, items 1 and 2), on a real mosquitto.

Anyone allowed to publish under ``fer-edge/#`` can send anything: schema-invalid JSON, no JSON,
strings holding terminal escape sequences. ``fer-edge subscribe`` (lines, ``--json``, ``--table``)
and ``examples/aggregate_per_minute.py`` must skip what is invalid (counted, reported once per
topic), go on with what follows, and never send a payload's control characters to the terminal.
The payload checker (:mod:`edge.events.validate`) is compared with the ``jsonschema`` package.
"""

import collections
import copy
import json
import subprocess
import sys

import numpy as np
import pytest

from edge.delivery.base import MemoryPublisher
from edge.events.payloads import load_schema, stats_payload, status_payload
from edge.events.validate import SCHEMA_IDS, Checker, PayloadChecker, SchemaError
from edge.labels import EMOTIONS
from edge.tracking.lifecycle import TrackLifecycle
from edge.tracking.track import IouTracker
from fer_edge.subscribe_checks import printable
from fer_testdata import REPO
from helpers import RawInbox, subscribe_cli
from mqtt_broker import mosquitto_fixture, sample_event

jsonschema = pytest.importorskip("jsonschema")

broker = mosquitto_fixture(scope="module")
Frame = collections.namedtuple("Frame", "index image timestamp")

# the four, and a payload that is not JSON
INVALID = [
    ("events", {"faces": "nope"}),
    ("tracks", {"type": "end", "after": None}),
    ("stats", {"delivery": "x", "stage_ms": [1]}),
    ("status", {"state": 5}),
    ("events", b"\x1b[2J not json"),
    ("stats", b"[" * 100000),  # JSON nested too deep for Python's parser
]
# what a terminal must never receive from a payload: ESC (escape sequences), BEL, C1 CSI, a bidi override
RAW = ("\x1b", "\x07", "\x9b", "\u202e")
HOSTILE_REASON = "\x1b]0;owned\x07\x1b[2J\x9b2J\u202eevil"


def send(url, messages, client_id="hostile"):
    """Publish ``[(topic, payload)]`` (dict payloads as JSON) with QoS 1 and wait for each PUBACK."""
    sender = RawInbox(url, client_id)
    try:
        for topic, payload in messages:
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
            sender.client.publish(topic, body, qos=1).wait_for_publish(10)
    finally:
        sender.stop()


def session(url, device, client_id, *args):
    """Create a persistent session for ``client_id`` (the broker keeps what is published next)."""
    made = subscribe_cli(
        "--broker", url, "--device-id", device, "--since", "--client-id", client_id, *args, "--timeout", "0.5"
    )
    assert made.returncode == 0, made.stderr


def no_raw_controls(text):
    return not any(c in text for c in RAW)


# ------------------------------------------------------------------------------- item 1: schema-invalid


def relaxed(schema):
    """``schema`` without its ``additionalProperties: false``: what the tolerant checker enforces."""
    if isinstance(schema, dict):
        return dict((k, relaxed(v)) for k, v in schema.items() if not (k == "additionalProperties" and v is False))
    if isinstance(schema, list):
        return [relaxed(v) for v in schema]
    return schema


def real_messages():
    """One of each kind, as a real agent makes them: {kind: [payload, ...]}."""
    tracker = IouTracker(max_missed=2)
    life = TrackLifecycle("cam-v", list(EMOTIONS), "m", "1", confirm_frames=2, fps=10.0, clock=lambda: 0.0)
    pub = MemoryPublisher("cam-v")
    pub.start()
    probs = np.full(len(EMOTIONS), 0.02, np.float32)
    probs[1] = 0.86
    for i in range(12):
        tracker.update([(40, 30, 60, 60)] if i < 6 else [], [probs] if i < 6 else [], i)
        life.observe(tracker.tracks, Frame(i, None, 1795515300.0 + i / 10.0), pub)
    life.finish(pub)
    pub.publish_event(sample_event("cam-v", 3, faces=2))
    pub.publish_stats(
        stats_payload("cam-v", 12.5, {"detect": 3.0}, 10, 4, delivery={"queued": 0, "dropped": 0, "reconnects": 0})
    )
    pub.close()
    out = {}
    for topic, text in pub.messages:
        out.setdefault(topic.split("/")[2], []).append(json.loads(text))
    assert set(out) == {"events", "tracks", "state", "stats", "status"}, set(out)
    return out


MUTATIONS = [
    lambda d: d.pop("device_id"),
    lambda d: d.update(device_id="a/b"),
    lambda d: d.update(device_id=""),
    lambda d: d.update(timestamp="2026-13-01T00:00:00.000Z"),
    lambda d: d.update(schema_version=9),
    lambda d: d.update(schema_version=True),
    lambda d: d.update(faces="nope"),
    lambda d: d.update(faces=[{"box": [1, 2, 3]}]),
    lambda d: d.update(fps=-1),
    lambda d: d.update(fps="fast"),
    lambda d: d.update(frames=1.5),
    lambda d: d.update(stage_ms=[1]),
    lambda d: d.update(delivery="x"),
    lambda d: d.update(delivery={"queued": 0}),
    lambda d: d.update(state=5),
    lambda d: d.update(state="maybe"),
    lambda d: d.update(type="moved"),
    lambda d: d.update(reason=None),
    lambda d: d.update(after=None),
    lambda d: d.update(emotions={"joy": 1}),
    lambda d: d.update(emotions={"happiness": 0}),
    lambda d: d.update(tracks=[1]),
    lambda d: d.update(unknown_key=1),
    lambda d: d["faces"][0].update(emotion="joy"),
    lambda d: d["faces"][0].update(box=[0, 0, 1, 1, 5]),
    lambda d: d["faces"][0].update(confidence=2),
    lambda d: d["faces"][0]["scores"].update(joy=0.1),
    lambda d: d["after"].update(end_time=None),
    lambda d: d["after"].update(emotion_shares={"happiness": "all"}),
    lambda d: d["before"].update(box="here"),
]


def test_the_checker_agrees_with_jsonschema():
    strict, tolerant = PayloadChecker(strict=True), PayloadChecker()
    compared = 0
    for kind, payloads in real_messages().items():
        schema = load_schema(SCHEMA_IDS[payloads[0]["schema"]])
        exact, loose = jsonschema.Draft7Validator(schema), jsonschema.Draft7Validator(relaxed(schema))
        for payload in payloads:
            assert exact.is_valid(payload) and strict.problem(payload, kind) is None, (kind, payload)
            for mutate in MUTATIONS:
                bad = copy.deepcopy(payload)
                try:
                    mutate(bad)
                except (KeyError, IndexError, TypeError, AttributeError):
                    continue  # a mutation for another kind
                assert (strict.problem(bad, kind) is None) == exact.is_valid(bad), (
                    kind,
                    bad,
                    strict.problem(bad, kind),
                )
                assert (tolerant.problem(bad, kind) is None) == loose.is_valid(bad), (kind, bad)
                compared += 1
    assert compared > 100
    event = real_messages()["events"][0]
    assert tolerant.problem(dict(event, unknown_key=1), "events") is None  # a newer agent's addition
    assert strict.problem(dict(event, unknown_key=1), "events") == "unknown_key: unknown key"
    assert tolerant.problem(real_messages()["status"][0], "events") == "a status message on the events topic"
    assert tolerant.problem({"faces": "nope"}, "events") == "no schema field"
    assert tolerant.problem(dict(event, faces="nope"), "events") == "faces: 'nope' is not of type array"
    assert tolerant.problem([1], "events") == "not a JSON object"
    with pytest.raises(SchemaError, match="patternProperties"):
        Checker({"patternProperties": {}})


def test_cli_lines_json_and_table_skip_invalid_messages_and_go_on(broker):
    device = "cam-invalid"
    modes = {"lines": [], "json": ["--json"], "table": ["--table", "--refresh", "0.2"]}
    for mode, args in modes.items():
        session(broker.url, device, "bad-" + mode, *args)
    valid, online = sample_event(device, 7, faces=1), status_payload(device, "online")
    send(
        broker.url,
        [("fer-edge/{}/{}".format(device, kind), payload) for kind, payload in INVALID + INVALID]
        + [("fer-edge/{}/events".format(device), valid), ("fer-edge/{}/status".format(device), online)],
    )
    for mode, args in modes.items():
        proc = subscribe_cli(
            "--broker",
            broker.url,
            "--device-id",
            device,
            "--since",
            "--client-id",
            "bad-" + mode,
            *args,
            "--timeout",
            "3",
        )
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (mode, proc.stderr[-2000:])
        for topic in ("events", "tracks", "stats", "status"):  # one warning per topic, the problem named
            warned = [
                line
                for line in proc.stderr.splitlines()
                if "skipped a message on fer-edge/{}/{} ".format(device, topic) in line
            ]
            assert len(warned) == 1, (mode, topic, proc.stderr)
        assert (
            "skipped 12 invalid messages: fer-edge/{}/events (4), fer-edge/{}/stats (4)".format(device, device)
            in proc.stderr
        ), proc.stderr
        assert no_raw_controls(proc.stdout + proc.stderr)
        if mode == "lines":
            assert "{} {} frame 7 track 0 happiness".format(valid["timestamp"], device) in proc.stdout, proc.stdout
            assert proc.stdout.splitlines()[-1].endswith("{} status online".format(device))
        elif mode == "json":
            assert [json.loads(line) for line in proc.stdout.splitlines()] == [valid, online]
        else:
            last = proc.stdout.split("--- ")[-1]
            assert "{}  online".format(device) in last and "(12 invalid messages skipped: see the log)" in last, last


def test_example_consumer_skips_invalid_events_and_goes_on(broker, tmp_path):
    device = "cam-example-bad"
    example = [sys.executable, str(REPO / "examples" / "aggregate_per_minute.py"), "--broker", broker.url]
    persistent = ["--client-id", "example-bad", "--persistent"]
    made = subprocess.run(example + persistent + ["--duration", "0.5"], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    good = sample_event(device, 1, faces=2)
    bad = [
        {"faces": "nope"},
        dict(good, timestamp=5),
        dict(good, faces="nope"),
        dict(good, faces=[1, 2]),
        dict(good, event_id=["a"]),
        [1, 2],
        b"\xff\xfe",
    ]
    send(
        broker.url,
        [("fer-edge/{}/events".format(device), p) for p in bad] + [("fer-edge/{}/events".format(device), good)],
    )
    csv_path = tmp_path / "minutes.csv"
    proc = subprocess.run(
        example + persistent + ["--duration", "3", "--csv", str(csv_path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert sum(1 for line in proc.stderr.splitlines() if line.startswith("skipped a message on ")) == 1, proc.stderr
    assert "7 invalid messages skipped: fer-edge/{}/events (7)".format(device) in proc.stderr, proc.stderr
    rows = csv_path.read_text().splitlines()
    assert len(rows) == 2 and rows[1].split(",")[1:4] == [device, "1", "2"], rows


# ------------------------------------------------------------------------------- item 2: escape sequences


def test_printable_escapes_what_a_terminal_acts_on():
    assert printable("cam-01 happiness 0.93 é ü 日本") == "cam-01 happiness 0.93 é ü 日本"
    assert printable(HOSTILE_REASON) == "\\x1b]0;owned\\x07\\x1b[2J\\x9b2J\\u202eevil"
    assert printable("a\nb\tc\x7f\u2028") == "a\\x0ab\\x09c\\x7f\\u2028"


def test_no_payload_string_reaches_the_terminal_raw(broker, tmp_path):
    device = "cam-escape"
    for client_id, args in (("esc-lines", []), ("esc-json", ["--json"]), ("esc-table", ["--table"])):
        session(broker.url, device, client_id, *args)
    hostile = status_payload(device, "offline", reason=HOSTILE_REASON)  # schema-valid: reason is free text
    raw_c1 = json.dumps(hostile, ensure_ascii=False).encode("utf-8")  # C1 and bidi characters raw in the JSON text
    send(broker.url, [("fer-edge/{}/status".format(device), raw_c1)])
    outputs = {}
    for client_id, args in (("esc-lines", []), ("esc-json", ["--json"]), ("esc-table", ["--table"])):
        proc = subscribe_cli(
            "--broker", broker.url, "--device-id", device, "--since", "--client-id", client_id, *args, "--timeout", "2"
        )
        assert proc.returncode == 0, proc.stderr
        assert no_raw_controls(proc.stdout + proc.stderr), repr(proc.stdout)
        outputs[client_id] = proc.stdout
    assert "status offline (\\x1b]0;owned\\x07\\x1b[2J\\x9b2J\\u202eevil)" in outputs["esc-lines"]
    assert [json.loads(line) for line in outputs["esc-json"].splitlines()] == [hostile]  # the same JSON, escaped
    assert "offline (\\x1b]0;owned\\x07\\x1b[2J\\x9b2J\\u202eevil)" in outputs["esc-table"]
    # a topic can hold escape sequences too: printed with a cleared value, or in the skip warning
    made = subscribe_cli(
        "--broker", broker.url, "--kinds", "state", "--since", "--client-id", "esc-topic", "--timeout", "0.5"
    )
    assert made.returncode == 0, made.stderr
    send(broker.url, [("fer-edge/\u202ecam/state", b"")])  # mosquitto refuses C0/C1 in topics
    proc = subscribe_cli(
        "--broker", broker.url, "--kinds", "state", "--since", "--client-id", "esc-topic", "--timeout", "2"
    )
    assert proc.returncode == 0 and "\\u202ecam/state" in proc.stderr, proc.stderr
    assert no_raw_controls(proc.stdout + proc.stderr), repr(proc.stdout + proc.stderr)
    # the example consumer prints device ids: one with a C1 CSI is escaped
    sneaky = sample_event("cam\x9b2J", 1)
    example = [sys.executable, str(REPO / "examples" / "aggregate_per_minute.py"), "--broker", broker.url]
    made = subprocess.run(
        example + ["--client-id", "esc-ex", "--persistent", "--duration", "0.5"], capture_output=True, timeout=60
    )
    assert made.returncode == 0
    send(broker.url, [("fer-edge/cam-esc/events", json.dumps(sneaky, ensure_ascii=False).encode("utf-8"))])
    proc = subprocess.run(
        example + ["--client-id", "esc-ex", "--persistent", "--duration", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "cam\\x9b2J" in proc.stdout and no_raw_controls(proc.stdout + proc.stderr), repr(proc.stdout)
