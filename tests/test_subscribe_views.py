"""``fer-edge subscribe``'s views of the face-track and device-state topics.

The lines and the live table (fer_edge/subscribe_lines.py, fer_edge/subscribe_table.py) are first
fed the messages of a real TrackLifecycle, then run against a real mosquitto while the real agent
(``fer-edge run``: BlazeFace + the shipped model on ONNX Runtime) plays a two-face video at its frame
rate (``--realtime``: the faces stay in view for seconds, as before a camera, whatever the CPU); the
CLI (``fer-edge subscribe --json`` and ``--table``) reads the same run from a persistent session.
What the views show is checked against what the agent published, collected by a plain
``edge.delivery.subscribe.subscribe`` on the side.
"""

import collections
import io
import json
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest

from edge.delivery.base import MemoryPublisher
from edge.delivery.subscribe import Message, subscribe
from edge.delivery.url import TOPIC_KINDS
from edge.events.payloads import load_schema
from edge.labels import EMOTIONS
from edge.tracking.lifecycle import TrackLifecycle, format_track_line
from edge.tracking.track import IouTracker
from fer_edge.subscribe_lines import Deduplicator, format_message_lines, run_subscriber
from fer_edge.subscribe_table import DeviceTable, run_table
from fer_testdata import REPO
from helpers import Collector
from helpers import subscribe_cli as cli
from mqtt_broker import mosquitto_fixture, sample_event

jsonschema = pytest.importorskip("jsonschema")

broker = mosquitto_fixture(scope="module")
LABELS = list(EMOTIONS)
HAPPY, SAD = LABELS.index("happiness"), LABELS.index("sadness")
Frame = collections.namedtuple("Frame", "index image timestamp")
DEVICE = "cam-views"
FRAMES = 40
WAIT = 30.0
SCHEMA_NAMES = {
    "fer-edge/emotion-event": "emotion-event",
    "fer-edge/track": "track",
    "fer-edge/state": "state",
    "fer-edge/status": "status",
    "fer-edge/stats": "stats",
}


def peaked(index):
    p = np.full(len(LABELS), 0.2 / (len(LABELS) - 1), np.float32)
    p[index] = 0.8
    return p


def as_message(topic, data, retain=False):
    device, kind = topic.split("/")[1:3]
    return Message(topic, device, kind, json.dumps(data).encode("utf-8"), data, retain, 1)


def table_rows(text):
    """The table part of a rendered DeviceTable: {device id: {column: text}}, cut at the header's columns."""
    lines = text.splitlines()
    starts = [lines[0].index(c) for c in DeviceTable.COLUMNS]
    rows = {}
    for line in lines[1:]:
        if not line.strip():
            break
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]
        rows[cells[0]] = dict(zip(DeviceTable.COLUMNS, cells))
    return rows


def recent_lines(text):
    """The lines under the table (track new/end)."""
    marker = "RECENT FACES (track new/end)\n"
    return [line.strip() for line in text.split(marker, 1)[1].splitlines()] if marker in text else []


def lifecycle_messages():
    """A face seen in frames 3..39 (happy, then sad), gone after; a second face in 5..59, still there at
    the stop: the real TrackLifecycle's track and state messages, in publish order."""
    tracker = IouTracker(smoothing=0.6, max_missed=5)
    clock = [0.0]
    life = TrackLifecycle(
        "cam-unit", LABELS, "model-x", "7", confirm_frames=3, fps=30.0, clock=lambda: clock[0], run_id="abcd1234"
    )
    pub = MemoryPublisher("cam-unit")
    pub.start()
    out = []
    pub_track, pub_state = pub.publish_track, pub.publish_state
    pub.publish_track = lambda m: (out.append(as_message("fer-edge/cam-unit/tracks", m)), pub_track(m))[1]
    pub.publish_state = lambda s: (out.append(as_message("fer-edge/cam-unit/state", s, retain=True)), pub_state(s))[1]
    for i in range(60):
        clock[0] = i / 30.0
        boxes = ([(200, 100, 80, 80)] if 3 <= i < 40 else []) + ([(400, 100, 80, 80)] if i >= 5 else [])
        probs = [peaked(HAPPY if i < 15 else SAD)] * (1 if 3 <= i < 40 else 0) + [peaked(HAPPY)] * (1 if i >= 5 else 0)
        tracker.update(boxes, probs, i)
        life.observe(tracker.tracks, Frame(i, None, 1795515300.0 + i / 30.0), pub)
    life.finish(pub)
    return out


def test_track_and_state_lines():
    messages = lifecycle_messages()
    tracks = [m for m in messages if m.kind == "tracks"]
    assert [m.data["type"] for m in tracks] == ["new", "new", "update", "end", "end"]
    for m in tracks:
        lines = format_message_lines(m)
        after, before = m.data["after"], m.data["before"]
        assert lines == [format_track_line(m.data)]  # the same line as `fer-edge run` prints
        assert lines[0].startswith(
            "{} cam-unit track {} {}".format(m.data["timestamp"], after["track_id"], m.data["type"])
        )
        if m.data["type"] == "update":
            assert "{} {:.2f} (was {})".format(after["emotion"], after["confidence"], before["emotion"]) in lines[0]
        if m.data["type"] == "end":
            shares = ", ".join(
                "{} {:.0f}%".format(k, 100 * v)
                for k, v in sorted(after["emotion_shares"].items(), key=lambda kv: -kv[1])
            )
            assert lines[0].endswith(
                "after {:.1f} s, {} frames: {} ({})".format(
                    after["duration"], after["frames"], shares, m.data["reason"]
                )
            ), lines
            assert shares.startswith(after["dominant_emotion"])  # the dominant emotion comes first
    reasons = [m.data["reason"] for m in tracks if m.data["type"] == "end"]
    assert reasons == ["gone", "stopped"]
    states = [m for m in messages if m.kind == "state"]
    assert max(s.data["faces"] for s in states) == 2 and states[-1].data["faces"] == 0
    for m in states:
        (line,) = format_message_lines(m)
        s = m.data
        assert line.startswith(
            "{} cam-unit state faces {} dominant {}".format(s["timestamp"], s["faces"], s["dominant_emotion"])
        )
        assert line.endswith(" fps {} [retained]".format("{:.1f}".format(s["fps"]) if "fps" in s else "-"))
        for emotion, n in s["emotions"].items():
            assert "{} {}".format(emotion, n) in line
    mixed = [m for m in states if len(m.data["emotions"]) == 2]
    assert mixed and "(happiness 1, sadness 1)" in format_message_lines(mixed[0])[0]
    assert format_message_lines(Message("fer-edge/cam-unit/state", "cam-unit", "state", b"", None, True, 1)) == [
        "fer-edge/cam-unit/state (empty retained message: the retained value was cleared)"
    ]
    dedupe = Deduplicator()
    assert [dedupe.seen(m) for m in tracks + tracks[:1]] == [False] * len(tracks) + [True]


def test_table_faces_and_dominant_from_the_state_and_recent_tracks():
    table = DeviceTable(clock=lambda: 1000.0)
    seen = []
    for m in lifecycle_messages():
        assert table.update(m)
        d = table.devices["cam-unit"]
        if m.kind == "state":
            assert (d.faces, d.dominant, dict(d.emotions)) == (
                m.data["faces"],
                m.data["dominant_emotion"],
                m.data["emotions"],
            )
            seen.append(table.render(1000.0))
    mixed = [table_rows(text)["cam-unit"] for text in seen if "happiness 1, sadness 1" in text]
    assert mixed, seen
    assert (mixed[0]["STATE"], mixed[0]["FACES"], mixed[0]["EMOTIONS"], mixed[0]["DOMINANT"]) == (
        "online",
        "2",
        "happiness 1, sadness 1",
        "happiness",
    )  # a tie: the first in the label order
    text = table.render(1000.0)
    row = table_rows(text)["cam-unit"]
    assert (row["FACES"], row["EMOTIONS"], row["DOMINANT"], row["TRACKS"]) == ("0", "-", "none", "2 new, 2 end"), row
    tracks = [m.data for m in lifecycle_messages() if m.kind == "tracks" and m.data["type"] != "update"]
    assert recent_lines(text) == [format_track_line(t) for t in tracks]  # update lines are left out
    # an event does not override the faces of the state topic
    assert table.update(as_message("fer-edge/cam-unit/events", dict(sample_event("cam-unit", 99), event_id="e-1")))
    assert table.devices["cam-unit"].faces == 0 and table.devices["cam-unit"].events == 1


# ------------------------------------------------------------------- a real agent on a real broker


@pytest.fixture(scope="module")
def agent_run(broker, tmp_path_factory):
    """The agent on a two-face video while the lines and the table run; the CLI sessions created before."""
    from fer_edge.samples import make_sample_video

    folder = tmp_path_factory.mktemp("views")
    video = make_sample_video(str(folder / "two-faces.mp4"), frames=FRAMES)
    for client_id in ("views-json", "views-table"):  # persistent sessions: the broker keeps this run for them
        made = cli(
            "--broker",
            broker.url,
            "--device-id",
            DEVICE,
            "--since",
            "--client-id",
            client_id,
            "--json",
            "--timeout",
            "0.5",
        )
        assert made.returncode == 0, made.stderr
    truth = Collector(timeout=WAIT)
    side = subscribe(broker.url, device_id=DEVICE, on_message=truth)
    assert side.wait_subscribed(10), side.last_error
    stop, ready_lines, ready_table = threading.Event(), threading.Event(), threading.Event()
    lines_out, table_out, result = io.StringIO(), io.StringIO(), {}
    threads = [
        threading.Thread(
            target=lambda: result.setdefault(
                "printed", run_subscriber(broker.url, DEVICE, out=lines_out, ready=ready_lines, stop=stop)
            )
        ),
        threading.Thread(
            target=lambda: result.setdefault(
                "table",
                run_table(broker.url, DEVICE, out=table_out, refresh=0.2, ansi=False, ready=ready_table, stop=stop),
            )
        ),
    ]
    for t in threads:
        t.start()
    try:
        assert ready_lines.wait(10) and ready_table.wait(10)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "fer_edge",
                "run",
                "--log-level",
                "WARNING",
                "--quiet",
                "--source",
                video,
                "--realtime",
                "--broker",
                broker.url,
                "--device-id",
                DEVICE,
                "--stats-interval",
                "0.5",
                "--data-dir",
                tempfile.mkdtemp(dir=str(folder)),
            ],
            cwd=str(REPO),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = json.loads(proc.stdout.strip().splitlines()[-1])["summary"]
        truth.wait(
            lambda ms: (
                any(m.kind == "status" and m.data["state"] == "offline" for m in ms)
                and sum(1 for m in ms if m.kind == "tracks" and m.data["type"] == "end") == summary["tracks"]["end"]
            )
        )
        time.sleep(0.5)  # the views' subscriptions get the same messages
    finally:
        stop.set()
        for t in threads:
            t.join(WAIT)
        side.stop()
    assert not any(t.is_alive() for t in threads)
    return {
        "summary": summary,
        "messages": list(truth.messages),
        "lines": lines_out.getvalue().splitlines(),
        "table_text": table_out.getvalue(),
        "table": result["table"],
        "printed": result["printed"],
    }


def of(run, kind):
    return [m.data for m in run["messages"] if m.kind == kind]


def test_the_agent_publishes_tracks_and_state(agent_run):
    summary = agent_run["summary"]
    assert summary["frames"] == FRAMES and summary["tracks"]["new"] == summary["tracks"]["end"] == 2, summary
    for kind in ("tracks", "state"):
        for data in of(agent_run, kind):
            jsonschema.validate(data, load_schema(SCHEMA_NAMES[data["schema"]]))
    assert max(s["faces"] for s in of(agent_run, "state")) == 2 and of(agent_run, "state")[-1]["faces"] == 0


def test_lines_show_every_track_message_and_state(agent_run):
    lines = agent_run["lines"]
    tracks = of(agent_run, "tracks")
    assert [t["type"] for t in tracks].count("new") == 2
    for t in tracks:  # each track message has its line, once
        assert lines.count(format_track_line(t)) == 1, (format_track_line(t), lines[-20:])
    ends = [line for line in lines if " end after " in line]
    assert len(ends) == 2 and all(line.endswith("(stopped)") for line in ends), ends
    for t in tracks:
        if t["type"] == "end":
            after = t["after"]
            assert any(
                " track {} end after {:.1f} s, {} frames: {} ".format(
                    after["track_id"], after["duration"], after["frames"], after["dominant_emotion"]
                )
                in line
                for line in ends
            ), (after, ends)
    states = of(agent_run, "state")
    state_lines = [line for line in lines if " {} state faces ".format(DEVICE) in line]
    assert len(state_lines) == len(states)
    for s, line in zip(states, state_lines):
        assert line.startswith(
            "{} {} state faces {} dominant {}".format(s["timestamp"], DEVICE, s["faces"], s["dominant_emotion"])
        ), (s, line)
    assert any(" state faces 2 dominant " in line for line in state_lines)
    assert state_lines[-1].split(" state ")[1].startswith("faces 0 dominant none")
    events = of(agent_run, "events")
    assert sum(1 for line in lines if " {} frame ".format(DEVICE) in line) == sum(
        max(1, len(e["faces"])) for e in events
    )
    assert agent_run["printed"] == len(agent_run["messages"])


def test_live_table_shows_faces_dominant_and_recent_tracks(agent_run):
    snapshots = [s.split("\n", 1)[1] for s in agent_run["table_text"].split("--- ")[1:]]
    assert len(snapshots) >= 2 and "\x1b[" not in agent_run["table_text"]

    # while the faces were in view: the state topic's faces, emotions and dominant emotion
    live = set(
        (s["dominant_emotion"], ", ".join("{} {}".format(k, v) for k, v in sorted(s["emotions"].items())))
        for s in of(agent_run, "state")
        if s["faces"] == 2
    )
    assert snapshots[0].startswith("(no devices yet")  # subscribed before the agent started
    during = [(table_rows(s)[DEVICE], s) for s in snapshots if s.startswith("DEVICE")]
    during = [(row, s) for row, s in during if row["STATE"] == "online" and row["FACES"] == "2"]
    assert during, snapshots[:3]
    assert any((row["DOMINANT"], row["EMOTIONS"]) in live for row, _ in during), (live, during[-1][0])
    assert any(" new " in " ".join(recent_lines(s)) for _, s in during)
    # at the end: offline, no face, both tracks new and ended, their four lines under the table
    last = snapshots[-1]
    row = table_rows(last)[DEVICE]
    assert (row["STATE"], row["FACES"], row["EMOTIONS"], row["DOMINANT"], row["TRACKS"]) == (
        "offline (shutdown)",
        "0",
        "-",
        "none",
        "2 new, 2 end",
    ), row
    news_and_ends = [t for t in of(agent_run, "tracks") if t["type"] in ("new", "end")]
    assert sorted(recent_lines(last)) == sorted(format_track_line(t) for t in news_and_ends)
    device = agent_run["table"].devices[DEVICE]
    assert (device.tracks_new, device.tracks_end, device.faces, device.dominant) == (2, 2, 0, "none")


def test_cli_json_passes_tracks_and_state_through(agent_run, broker):
    proc = cli(
        "--broker",
        broker.url,
        "--device-id",
        DEVICE,
        "--since",
        "--client-id",
        "views-json",
        "--json",
        "--timeout",
        "4",
    )
    assert proc.returncode == 0, proc.stderr
    got = [json.loads(line) for line in proc.stdout.splitlines()]
    for data in got:
        jsonschema.validate(data, load_schema(SCHEMA_NAMES[data["schema"]]))
    by_schema = collections.Counter(d["schema"] for d in got)
    assert set(by_schema) == set(SCHEMA_NAMES), by_schema
    assert [d["message_id"] for d in got if d["schema"] == "fer-edge/track"] == [
        t["message_id"] for t in of(agent_run, "tracks")
    ]
    assert [d for d in got if d["schema"] == "fer-edge/state"][-1] == of(agent_run, "state")[-1]
    assert [d["event_id"] for d in got if d["schema"] == "fer-edge/emotion-event"] == [
        e["event_id"] for e in of(agent_run, "events")
    ]


def test_cli_table_and_kinds(agent_run, broker):
    proc = cli(
        "--broker",
        broker.url,
        "--device-id",
        DEVICE,
        "--since",
        "--client-id",
        "views-table",
        "--table",
        "--refresh",
        "0.3",
        "--timeout",
        "4",
    )
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.split("--- ")[-1].split("\n", 1)[1]
    row = table_rows(last)[DEVICE]
    assert (row["STATE"], row["DOMINANT"], row["TRACKS"]) == ("offline (shutdown)", "none", "2 new, 2 end"), row
    assert sorted(recent_lines(last)) == sorted(
        format_track_line(t) for t in of(agent_run, "tracks") if t["type"] in ("new", "end")
    )
    # --kinds: only the retained state arrives on a fresh subscription to state alone
    only = cli("--broker", broker.url, "--device-id", DEVICE, "--kinds", "state", "--count", "1", "--timeout", "10")
    assert only.returncode == 0, only.stderr
    assert only.stdout.splitlines() == [
        format_message_lines(as_message("fer-edge/{}/state".format(DEVICE), of(agent_run, "state")[-1], retain=True))[0]
    ]
    bad = cli("--broker", broker.url, "--kinds", "events,faces")
    assert bad.returncode == 2 and "unknown topic kind faces" in bad.stderr and ",".join(TOPIC_KINDS) in bad.stderr
