"""The host agent end to end, with real parts: a video file -> Haar -> ONNX Runtime -> mosquitto.

mosquitto (Debian) is started by the fixture on a free loopback port; a subscriber built on
edge.delivery.subscribe collects what the agent publishes; every event is validated against the schema.
"""

import json
import os
import signal
import subprocess
import sys

import cv2
import jsonschema
import numpy as np
import pytest

from edge.classifier import default_model_path
from edge.events.payloads import load_schema
from fer_testdata import REPO
from helpers import collect, wait_until
from mqtt_broker import mosquitto_fixture

broker = mosquitto_fixture(scope="module")
FRAMES = 24
WAIT = 20  # s: what the agent published reaches the subscriber


@pytest.fixture(scope="module")
def model_path():
    path = default_model_path()
    assert os.path.isfile(path), "the shipped model {} is missing".format(path)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from fer_edge.samples import make_sample_video

    return make_sample_video(str(tmp_path_factory.mktemp("v") / "two-faces.mp4"), frames=FRAMES)


def agent(*args, timeout=180, data_dir=None, **kw):
    """`fer-edge run` (its default command line: events printed) with its event queue in a fresh
    folder (rows left by other runs would be re-sent)."""
    import tempfile

    data_dir = tempfile.mkdtemp(prefix="fer-edge-queue-") if data_dir is None else data_dir
    cmd = [sys.executable, "-m", "fer_edge", "run", "--log-level", "WARNING", "--data-dir", data_dir] + [
        str(a) for a in args
    ]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, **kw)


def closed_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_default_command_line_prints_its_own_events_and_the_delivery(broker, video, model_path):
    proc = agent(
        "--source",
        video,
        "--broker",
        broker.url,
        "--device-id",
        "cam-print",
        "--model",
        model_path,
        "--stats-interval",
        "0.5",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert sum(" cam-print frame " in line and " track " in line for line in lines) == 2 * FRAMES
    assert any(" cam-print stats fps " in line for line in lines)
    delivery = json.loads(lines[-1])["summary"]["delivery"]
    assert delivery["dropped"] == delivery["failed"] == delivery["queued"] == 0
    assert delivery["acknowledged"] >= FRAMES


def test_broker_down_queues_on_disk_or_says_what_was_dropped(video, model_path, tmp_path):
    """The printer opens no connection of its own, so a broker that is down does not stop the run;
    the summary and the exit status say where the events are."""
    url = "mqtt://127.0.0.1:{}".format(closed_port())
    common = [
        "--source",
        video,
        "--broker",
        url,
        "--device-id",
        "cam-down",
        "--model",
        model_path,
        "--flush-timeout",
        "0.5",
        "--reconnect-min-delay",
        "0.2",
        "--reconnect-max-delay",
        "0.5",
    ]
    queued = agent(*common, data_dir=str(tmp_path / "queue"))
    assert queued.returncode == 0, queued.stderr[-3000:]
    delivery = json.loads(queued.stdout.strip().splitlines()[-1])["summary"]["delivery"]
    assert delivery["queued"] >= FRAMES and delivery["queued_in"] == "disk" and delivery["acknowledged"] == 0
    assert "wait in the on-disk queue" in queued.stderr
    assert sum(" cam-down frame " in line for line in queued.stdout.splitlines()) == 2 * FRAMES  # printed anyway
    lost = agent(*common, data_dir="")  # a memory queue: what is not delivered at the end is lost
    assert lost.returncode == 3, lost.stderr[-3000:]
    delivery = json.loads(lost.stdout.strip().splitlines()[-1])["summary"]["delivery"]
    assert delivery["dropped"] >= FRAMES
    assert "dropped" in lost.stderr and "not delivered to {}".format(url) in lost.stderr


def test_video_to_schema_valid_events_one_per_frame(broker, video, model_path, tmp_path):
    sub, collector = collect(broker.url, "cam-e2e")
    try:
        proc = agent(
            "--source",
            video,
            "--broker",
            broker.url,
            "--device-id",
            "cam-e2e",
            "--model",
            model_path,
            "--publish",
            "every-frame",
            "--annotate",
            tmp_path / "out.mp4",
            "--stats-interval",
            "0.5",
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = json.loads(proc.stdout.strip().splitlines()[-1])["summary"]
        assert summary["frames"] == FRAMES and summary["events"] == FRAMES and summary["errors"] == 0
        assert wait_until(lambda: len(collector.of_kind("events")) >= FRAMES, WAIT)
        assert wait_until(lambda: any(m.data.get("state") == "offline" for m in collector.of_kind("status")), WAIT)
    finally:
        sub.stop()
    events = [m.data for m in collector.of_kind("events")]
    schema = load_schema("emotion-event")
    for event in events:
        jsonschema.validate(event, schema)
    assert [e["frame"] for e in events] == list(range(FRAMES))  # every frame, once, in order
    assert all(e["device_id"] == "cam-e2e" for e in events)
    assert all(len(e["faces"]) == 2 for e in events)  # the sample video shows two faces
    assert {f["track_id"] for e in events for f in e["faces"]} == {1, 2}  # stable ids
    for face in events[0]["faces"]:
        assert abs(sum(face["scores"].values()) - 1.0) < 1e-3
        assert face["emotion"] == max(face["scores"], key=face["scores"].get)
    assert collector.of_kind("stats"), "no stats message"
    jsonschema.validate(collector.of_kind("stats")[-1].data, load_schema("stats"))
    # annotated at the source's frame rate, in a codec browsers play (H.264 .mp4, else VP8 .webm)
    written = summary["annotated"]
    assert written.endswith((".mp4", ".webm")) and os.path.isfile(written), written
    capture = cv2.VideoCapture(written)
    assert abs(capture.get(cv2.CAP_PROP_FPS) - cv2.VideoCapture(video).get(cv2.CAP_PROP_FPS)) < 0.1
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == FRAMES


def test_on_change_publishes_fewer_events(broker, video, model_path):
    sub, collector = collect(broker.url, "cam-change")
    try:
        proc = agent(
            "--source",
            video,
            "--broker",
            broker.url,
            "--device-id",
            "cam-change",
            "--model",
            model_path,
            "--publish",
            "on-change",
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = json.loads(proc.stdout.strip().splitlines()[-1])["summary"]
        assert wait_until(lambda: len(collector.of_kind("events")) >= summary["events"], WAIT)
    finally:
        sub.stop()
    events = [m.data for m in collector.of_kind("events")]
    assert 1 <= len(events) < FRAMES and events[0]["frame"] == 0
    assert {f["track_id"] for f in events[0]["faces"]} == {1, 2}


def test_corrupt_frames_are_skipped_and_counted(broker, video, model_path, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    capture = cv2.VideoCapture(video)
    for i in range(6):
        ok, image = capture.read()
        cv2.imwrite(str(frames / "f{:02d}.jpg".format(i)), image)
    (frames / "f02.jpg").write_bytes(b"\xff\xd8\xff garbage")
    proc = agent("--source", frames, "--broker", broker.url, "--device-id", "cam-corrupt", "--model", model_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])["summary"]
    assert summary["frames"] == 5 and summary["corrupt_frames"] == 1


def video_frames(path):
    """Every frame OpenCV decodes from ``path``."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames


def test_annotated_video_keeps_frames_of_another_size(video, model_path, tmp_path):
    """An image folder of mixed sizes: every frame goes into the annotated video (scaled to fit the
    video's size, with bars, never stretched), and the summary counts them."""
    frames = tmp_path / "mixed"
    frames.mkdir()
    first = video_frames(video)[0]  # 640x480, two faces
    sizes = [(640, 480)] * 3 + [(320, 240), (480, 640), (800, 450), (640, 480), (333, 250)]
    for i, (w, h) in enumerate(sizes):
        cv2.imwrite(str(frames / "f{:02d}.jpg".format(i)), cv2.resize(first, (w, h)))
    out = tmp_path / "annotated.avi"
    proc = agent(
        "--source", frames, "--no-embedded-broker", "--device-id", "cam-mixed", "--model", model_path, "--quiet",
        "--annotate", out,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])["summary"]
    assert summary["frames"] == 8
    written = video_frames(summary["annotated"])
    assert len(written) == 8, "{} of 8 frames in the annotated video".format(len(written))
    assert all(image.shape == (480, 640, 3) for image in written)
    assert summary["annotated_frames"] == {"written": 8, "letterboxed": 4, "failed": 0}
    assert "letterboxed" in proc.stderr  # the log says why the frames look different
    portrait = written[4].astype(int)  # 480x640 shown 360x480 in the middle: bars left and right
    assert portrait[:, :100].max() < 40 and portrait[:, -100:].max() < 40 and portrait[:, 200:440].std() > 20
    # a folder of JPEGs keeps each frame's own size
    folder = tmp_path / "annotated-jpegs"
    proc = agent(
        "--source", frames, "--no-embedded-broker", "--device-id", "cam-mixed", "--model", model_path, "--quiet",
        "--annotate", folder,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    shapes = [cv2.imread(str(p)).shape[:2] for p in sorted(folder.iterdir())]
    assert shapes == [(h, w) for w, h in sizes]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["summary"]["annotated_frames"]["written"] == 8


def write_avi(path, images, fps=15.0):
    """An MJPG .avi of ``images`` (a container that still opens when the end of the file is cut off)."""
    height, width = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for image in images:
        writer.write(image)
    writer.release()
    return str(path)


def test_a_truncated_video_says_it_ended_early(video, model_path, tmp_path):
    """A video cut off after about half of its frames (an interrupted copy): what decodes is processed,
    the summary and a line on stderr say the source ended early, and the exit status stays 0."""
    whole = write_avi(tmp_path / "whole.avi", video_frames(video))
    data = open(whole, "rb").read()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    proc = agent("--source", cut, "--no-embedded-broker", "--device-id", "cam-cut", "--model", model_path, "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])["summary"]
    assert 0 < summary["frames"] < FRAMES
    assert "ended_early" in summary, summary
    assert "of the {} frames".format(FRAMES) in summary["ended_early"]
    assert "ended early" in proc.stderr and str(cut) in proc.stderr


def test_a_source_that_gives_no_frame_fails_the_run(model_path, tmp_path):
    """An image folder where nothing decodes, and a video whose frames are all cut off: the run says
    it processed nothing and exits 4 (not 0)."""
    folder = tmp_path / "broken"
    folder.mkdir()
    for i in range(3):
        (folder / "f{}.jpg".format(i)).write_bytes(b"\xff\xd8\xff not a JPEG")
    proc = agent("--source", folder, "--no-embedded-broker", "--device-id", "cam-none", "--model", model_path)
    assert proc.returncode == 4, (proc.returncode, proc.stderr[-3000:])
    summary = json.loads(proc.stdout.strip().splitlines()[-1])["summary"]
    assert summary["frames"] == 0 and summary["corrupt_frames"] == 3
    assert "processed nothing" in proc.stderr and "3 unreadable" in proc.stderr
    images = [np.full((240, 320, 3), 40 + k, np.uint8) for k in range(30)]
    whole = write_avi(tmp_path / "whole.avi", images)
    data = open(whole, "rb").read()
    header = tmp_path / "header-only.avi"
    header.write_bytes(data[: data.index(b"movi") + 8])  # the header announces 30 frames; none follows
    proc = agent("--source", header, "--no-embedded-broker", "--device-id", "cam-none", "--model", model_path)
    assert proc.returncode == 4, (proc.returncode, proc.stderr[-3000:])
    summary = json.loads(proc.stdout.strip().splitlines()[-1])["summary"]
    assert summary["frames"] == 0 and "of the 30 frames" in summary["ended_early"]
    assert "processed nothing" in proc.stderr


def test_missing_model_and_bad_config_are_clear_errors(broker, video, tmp_path):
    proc = agent("--source", video, "--broker", broker.url, "--model", tmp_path / "nope.onnx", timeout=60)
    assert proc.returncode == 2 and "nope.onnx" in proc.stderr and "not found" in proc.stderr
    config = tmp_path / "agent.json"
    config.write_text('{"source": "x.mp4", "publsh": "every-frame"}')
    proc = agent("--config", config, timeout=60)
    assert proc.returncode == 2 and "unknown key(s) publsh" in proc.stderr and str(config) in proc.stderr
    proc = agent("--source", video, "--broker", "mqtt://127.0.0.1:70000", timeout=60)
    assert proc.returncode == 2 and "70000" in proc.stderr


def test_sigterm_finishes_the_frame_flushes_and_goes_offline(broker, model_path, tmp_path):
    from fer_edge.samples import make_sample_video

    long_video = make_sample_video(str(tmp_path / "long.mp4"), frames=400)
    sub, collector = collect(broker.url, "cam-term")
    try:
        cmd = [
            sys.executable,
            "-m",
            "fer_edge",
            "run",
            "--quiet",
            "--source",
            long_video,
            "--broker",
            broker.url,
            "--device-id",
            "cam-term",
            "--model",
            model_path,
            "--data-dir",
            str(tmp_path / "queue"),
        ]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert wait_until(lambda: len(collector.of_kind("events")) >= 5, 60)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-3000:]
        summary = json.loads(out.strip().splitlines()[-1])["summary"]
        assert 5 <= summary["frames"] < 400
        assert wait_until(lambda: len(collector.of_kind("events")) == summary["events"], WAIT)
        assert wait_until(lambda: collector.of_kind("status")[-1].data["state"] == "offline", WAIT)
    finally:
        sub.stop()


def test_detect_emotions_api_and_image_command(video, model_path, tmp_path):
    from edge import detect_emotions, load_classifier

    ok, frame = cv2.VideoCapture(video).read()
    faces = detect_emotions(frame, model=model_path)
    assert len(faces) == 2
    for face in faces:
        assert set(face) == {"box", "emotion", "confidence", "scores"}
        assert len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"])
        assert face["emotion"] in face["scores"] and face["confidence"] == face["scores"][face["emotion"]]
    # a gray frame finds the same faces (the neural detector sees colour, so boxes move a little)
    gray_faces = detect_emotions(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), model=model_path)
    assert len(gray_faces) == 2
    for a, b in zip(sorted(f["box"] for f in gray_faces), sorted(f["box"] for f in faces)):
        assert max(abs(u - v) for u, v in zip(a, b)) <= 6, (a, b)
    # the scores are the classifier's on the detector's FER-framed crops (not on the bare boxes)
    from edge.detect.factory import crop, make_detector

    detections = make_detector().detect(frame)
    assert [list(d.box) for d in detections] == [f["box"] for f in faces]
    clf = load_classifier(model_path)
    expected = clf.predict([crop(frame, d) for d in detections])
    np.testing.assert_allclose(expected, [[f["scores"][k] for k in clf.labels] for f in faces], atol=1e-4)
    for d in detections:  # the crop mapping is really applied: a square about 1.2x the box, above its centre
        side = crop(frame, d).shape[0]
        assert 1.1 < side / ((d.box[2] + d.box[3]) / 2.0) < 1.3
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), frame)
    proc = subprocess.run(
        [sys.executable, "-m", "fer_edge", "image", str(path), "--model", model_path],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(json.loads(proc.stdout)["faces"]) == 2


def test_outbox_status_and_flush_deliver_a_backlog_without_a_camera(broker, video, model_path, tmp_path):
    down = "mqtt://127.0.0.1:{}".format(closed_port())
    queue = str(tmp_path / "queue")
    run = agent(
        "--source",
        video,
        "--broker",
        down,
        "--device-id",
        "cam-backlog",
        "--model",
        model_path,
        "--quiet",
        "--flush-timeout",
        "0.5",
        data_dir=queue,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    cli = [sys.executable, "-m", "fer_edge", "outbox"]
    status = subprocess.run(
        cli + ["status", "--device-id", "cam-backlog", "--data-dir", queue],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    before = json.loads(status.stdout)
    assert before["messages"] >= FRAMES and before["last_event_seq"] == FRAMES
    sub, collector = collect(broker.url, "cam-backlog")
    try:
        flush = subprocess.run(
            cli
            + ["flush", "--device-id", "cam-backlog", "--data-dir", queue, "--broker", broker.url, "--timeout", "30"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert flush.returncode == 0, flush.stderr[-3000:]
        assert json.loads(flush.stdout.strip().splitlines()[-1])["flushed"]["left"] == 0
        assert wait_until(lambda: len(collector.of_kind("events")) >= FRAMES, WAIT)
    finally:
        sub.stop()
    assert [m.data["frame"] for m in collector.of_kind("events")] == list(range(FRAMES))  # in order, once
    after = json.loads(
        subprocess.run(
            cli + ["status", "--device-id", "cam-backlog", "--data-dir", queue],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    )
    assert after["messages"] == 0
    nowhere = subprocess.run(
        cli + ["flush", "--device-id", "cam-nothing", "--data-dir", queue, "--broker", down],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert nowhere.returncode == 0 and "nothing queued" in nowhere.stdout


def test_events_out_writes_the_results_as_jsonl_or_csv(video, model_path, tmp_path):
    import csv

    jsonl, table = tmp_path / "events.jsonl", tmp_path / "faces.csv"
    for path in (jsonl, table):
        proc = agent(
            "--source",
            video,
            "--no-embedded-broker",
            "--device-id",
            "cam-file",
            "--model",
            model_path,
            "--quiet",
            "--events-out",
            path,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert not os.path.exists(str(path) + ".partial")
    events = [json.loads(line) for line in jsonl.read_text().splitlines()]
    schema = load_schema("emotion-event")
    for e in events:
        jsonschema.validate(e, schema)
    assert [e["frame"] for e in events] == list(range(FRAMES))
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 2 * FRAMES and {r["track_id"] for r in rows} == {"1", "2"}
    first = rows[0]
    assert first["emotion"] == max(
        ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"),
        key=lambda k: float(first[k]),
    )
    bad = agent("--source", video, "--no-embedded-broker", "--events-out", tmp_path / "x.txt")
    assert bad.returncode == 2 and "must end in .jsonl or .csv" in bad.stderr


def test_annotations_stay_inside_the_frame_and_apart(tmp_path):
    from edge.view.annotate import draw

    frame = np.full((120, 160, 3), 255, np.uint8)  # a white wall
    scores = {"neutral": 0.5, "happiness": 0.3, "surprise": 0.2}
    faces = [
        {"box": [0, 0, 40, 40], "track_id": 1, "emotion": "neutral", "confidence": 0.5, "scores": scores},
        {"box": [30, 10, 40, 40], "track_id": 2, "emotion": "neutral", "confidence": 0.5, "scores": scores},
        {"box": [130, 95, 30, 25], "track_id": 3, "emotion": "neutral", "confidence": 0.5, "scores": scores},
    ]
    out = draw(frame, faces)
    assert out.shape == frame.shape and (out < 60).any()  # the dark outline shows on white
    import edge.view.annotate as annotate

    placed = []
    original = annotate._fit

    def record(box, size, width, height, taken_list):
        x, y = original(box, size, width, height, taken_list)
        placed.append((x, y, size[0], size[1]))
        return x, y

    annotate._fit = record
    try:
        draw(frame, faces)
    finally:
        annotate._fit = original
    for x, y, w, h in placed:  # every label inside the frame
        assert x >= 0 and y >= 0 and x + w <= 160 + 1 and y + h <= 120 + 1
