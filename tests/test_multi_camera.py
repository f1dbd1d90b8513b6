"""Several cameras in one agent (config ``cameras``), with real parts: sample videos made by
fer_edge.samples as the cameras, BlazeFace and the shipped emotion model on ONNX Runtime, a real
mosquitto (tests/mqtt_broker.py) and edge.delivery.subscribe as the consumer.

What is counted here is counted on the real classifier: a wrapper records every ``predict``
call and its batch size (the classifier itself runs). The one camera that breaks on purpose
(``BreaksAfter``) wraps a real video source and raises from its ``read`` after a few frames, the
way a camera whose driver fails does.
"""

import json
import re
import subprocess
import sys
import threading
import time

import jsonschema
import pytest

from edge.agent.sources import FrameSource
from edge.config.agent import ConfigError, load_config
from edge.config.cameras import camera_configs
from edge.events.payloads import load_schema
from fer_testdata import REPO
from helpers import collect, wait_until
from mqtt_broker import mosquitto_fixture

broker = mosquitto_fixture(scope="module")
FRAMES_A, FRAMES_B = 10, 16
WAIT = 20  # s: what the agent published reaches the subscriber


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from fer_edge.samples import make_sample_video

    folder = tmp_path_factory.mktemp("cams")
    return (
        make_sample_video(str(folder / "a.mp4"), frames=FRAMES_A),
        make_sample_video(str(folder / "b.mp4"), frames=FRAMES_B),
    )


def write_config(path, cameras, **shared):
    shared["cameras"] = cameras
    path.write_text(json.dumps(shared))
    return str(path)


# ---------------------------------------------------------------- the config


def test_cameras_config_merges_shared_and_per_camera_keys(tmp_path):
    path = write_config(
        tmp_path / "cams.json",
        [
            {"source": "a.mp4", "device_id": "door", "publish": "on-change", "detector_tiles": "2x1"},
            {"source": "b.mp4", "device_id": "hall", "client_id": "thing-hall"},
        ],
        publish="interval",
        interval=2.0,
    )
    config = load_config(path, env={})
    door, hall = camera_configs(config)
    assert (door["device_id"], door["source"], door["publish"], door["detector_tiles"]) == (
        "door",
        "a.mp4",
        "on-change",
        "2x1",
    )
    assert (hall["device_id"], hall["publish"], hall["interval"], hall["client_id"]) == (
        "hall",
        "interval",
        2.0,
        "thing-hall",
    )
    assert door["cameras"] == [] and hall["detector_tiles"] == "auto"
    ini = tmp_path / "cams.ini"  # an INI file holds the same list as JSON text
    ini.write_text(
        '[agent]\npublish = on-change\ncameras = [{"source": "a.mp4", "device_id": "door"},\n'
        '    {"source": "b.mp4", "device_id": "hall"}]\n'
    )
    assert [c["device_id"] for c in camera_configs(load_config(str(ini), env={}))] == ["door", "hall"]
    assert camera_configs(load_config(None, env={}, overrides={"source": "x.mp4"}))[0]["source"] == "x.mp4"


@pytest.mark.parametrize(
    "cameras, shared, message",
    [
        (
            [
                {"source": "a.mp4", "device_id": "cam"},
                {"source": "b.mp4", "device_id": "x"},
                {"source": "c.mp4", "device_id": "cam"},
            ],
            {},
            "cameras[0] and cameras[2] both have device_id 'cam'",
        ),
        (
            [
                {"source": "a.mp4", "device_id": "a", "client_id": "one"},
                {"source": "b.mp4", "device_id": "b", "client_id": "one"},
            ],
            {},
            "cameras[0] and cameras[1] both have client_id 'one'",
        ),
        (
            [{"source": "a.mp4", "device_id": "a"}, {"source": "b.mp4", "device_id": "b"}],
            {"client_id": "shared"},
            "cameras[0] and cameras[1] both have client_id 'shared' (the top-level 'client_id')",
        ),
        (
            [
                {"source": "a.mp4", "device_id": "a", "view": "8080"},
                {"source": "b.mp4", "device_id": "b", "view": "127.0.0.1:8080"},
            ],
            {},
            "cameras[0] and cameras[1] both have view '127.0.0.1:8080'",
        ),
        (
            [{"source": "a.mp4", "device_id": "a"}, {"source": "b.mp4", "device_id": "b"}],
            {"annotate": "out.webm"},
            "cameras[0] and cameras[1] both have annotate 'out.webm'",
        ),
        ([{"source": "a.mp4"}], {}, "cameras[0]: key 'device_id' is required"),
        (
            [{"device_id": "a", "source": "a.mp4", "model": "m.onnx"}],
            {},
            "cameras[0]: unknown key(s) model (a setting shared by every camera goes at the top level)",
        ),
        (
            [{"device_id": "a/b", "source": "a.mp4"}],
            {},
            "cameras[0]: key 'device_id': device id 'a/b' must not contain",
        ),
        ([{"device_id": "a", "source": "a.mp4", "publish": "sometimes"}], {}, "cameras[0]: key 'publish'"),
        ([{"device_id": "a", "source": "a.mp4", "detector_tiles": "9x9"}], {}, "cameras[0]: key 'detector_tiles'"),
        (
            [{"device_id": "a", "source": "a.mp4", "cert_file": "/nowhere/a.pem"}],
            {},
            "cameras[0]: key 'cert_file': file /nowhere/a.pem not found",
        ),
        ([], {}, "key 'cameras': expected a non-empty list"),
        ([{"device_id": "a", "source": "a.mp4"}], {"source": "0"}, "key 'source': with 'cameras' every camera names"),
    ],
)
def test_bad_cameras_config_is_named(tmp_path, cameras, shared, message):
    path = write_config(tmp_path / "cams.json", cameras, **shared)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert message in str(err.value) and str(err.value).startswith(path)


def test_a_camera_overrides_detector_tiles_on_the_one_loaded_detector():
    from edge.agent.assembly import camera_detector
    from edge.detect.factory import make_detector
    from edge.detect.scheduled import ScheduledDetector

    shared = make_detector("blazeface-back", tiles="1x1")
    same = camera_detector(shared, {"detector_tiles": "1x1"})
    tiled = camera_detector(shared, {"detector_tiles": "2x1"})
    assert same is shared and tiled is not shared
    assert tiled.tiles == (2, 1) and shared.tiles == (1, 1) and tiled.backend is shared.backend
    assert len(tiled.regions(640, 480)) == 3 and len(shared.regions(640, 480)) == 1
    # auto (the default): each camera its own schedule on the one model
    one, two = camera_detector(shared, {"detector_tiles": "auto"}), camera_detector(shared, {"detector_tiles": "auto"})
    assert isinstance(one, ScheduledDetector) and isinstance(two, ScheduledDetector) and one is not two
    assert one.detector.backend is shared.backend and one.schedule is not two.schedule


# ---------------------------------------------------------------- in process: one batch per round


class CountingClassifier(object):
    """The real classifier; records the batch size of every predict call."""

    def __init__(self, inner):
        self.inner = inner
        self.batches = []

    def predict(self, faces):
        self.batches.append(len(faces))
        return self.inner.predict(faces)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_one_classifier_call_per_round_covers_every_cameras_faces(broker, videos, tmp_path):
    from edge.agent.assembly import Factories
    from edge.agent.service import load_host_classifier, serve

    config = load_config(
        write_config(
            tmp_path / "cams.json",
            [
                {"source": videos[0], "device_id": "round-a"},
                {"source": videos[1], "device_id": "round-b", "publish": "on-change"},
            ],
            broker=broker.url,
            data_dir="",
            stats_interval=0.2,
        ),
        env={},
    )
    made = []

    def classifier(cfg):
        made.append(CountingClassifier(load_host_classifier(cfg)))
        return made[-1]

    summary = serve(config, factories=Factories(classifier=classifier))
    assert len(made) == 1  # one classifier for both cameras
    batches = made[0].batches
    cams = summary["cameras"]
    assert cams["round-a"]["state"] == cams["round-b"]["state"] == "ended"
    assert (cams["round-a"]["frames"], cams["round-b"]["frames"]) == (FRAMES_A, FRAMES_B)
    # one call per round; rounds = the longer video's frames; each call holds both cameras' faces
    assert summary["classifier_calls"] == summary["rounds"] == len(batches) == FRAMES_B
    assert sum(batches) == summary["faces"] == cams["round-a"]["faces"] + cams["round-b"]["faces"]
    assert cams["round-a"]["faces"] >= FRAMES_A and cams["round-b"]["faces"] >= FRAMES_B
    assert max(batches[:FRAMES_A]) >= 3 and max(batches[:FRAMES_A]) > max(batches[FRAMES_A:])  # two cameras' faces
    assert cams["round-a"]["events"] == FRAMES_A and cams["round-b"]["events"] < FRAMES_B  # every-frame, on-change
    tracks = cams["round-a"]["tracks"]
    assert tracks["new"] >= 1 and tracks["end"] == tracks["new"]


class BreaksAfter(FrameSource):
    """A real video source whose ``read`` raises after ``frames`` frames (a camera driver failing)."""

    def __init__(self, inner, frames):
        FrameSource.__init__(self, inner.uri)
        self.inner, self.left = inner, frames
        self.fps = inner.fps

    def read(self):
        if self.left <= 0:
            raise OSError("camera unplugged (test)")
        self.left -= 1
        return self.inner.read()

    def close(self):
        self.inner.close()


def test_a_camera_that_fails_or_stalls_does_not_stop_the_others(broker, videos, tmp_path):
    """cam-broken raises after 3 frames (dropped and closed: offline status); cam-live is a live source
    (a thread keeping the newest frame, reconnecting by edge.agent.sources' rules) that delivers a few frames
    and then none; cam-ok reads all its frames meanwhile."""
    import cv2

    from edge.agent.assembly import Factories
    from edge.agent.service import serve
    from edge.agent.sources import LiveSource, open_source

    sub, collector = collect(broker.url)
    config = load_config(
        write_config(
            tmp_path / "cams.json",
            [
                {"source": videos[1], "device_id": "cam-ok"},
                {"source": videos[0], "device_id": "cam-broken"},
                {"source": "live:" + videos[0], "device_id": "cam-live"},
            ],
            broker=broker.url,
            data_dir="",
            stats_interval=0.2,
        ),
        env={},
    )

    def source(cfg):
        if cfg["device_id"] == "cam-broken":
            return BreaksAfter(open_source(cfg["source"]), 3)
        if cfg["device_id"] == "cam-live":
            path = cfg["source"][len("live:") :]
            return LiveSource(cfg["source"], lambda: cv2.VideoCapture(path), max_backoff=0.5)
        return open_source(cfg["source"])

    stop = threading.Event()
    result = {}
    thread = threading.Thread(
        target=lambda: result.update(serve(config, stop=stop, factories=Factories(source=source)))
    )
    try:
        thread.start()
        assert wait_until(
            lambda: any(m.data.get("state") == "offline" for m in collector.of_kind("status", "cam-ok")), 120
        ), "cam-ok did not finish"
        time.sleep(1.5)  # cam-live reconnects (its video ended) while nothing else runs
        stop.set()
        thread.join(60)
        assert not thread.is_alive()
        assert wait_until(
            lambda: any(m.data.get("state") == "offline" for m in collector.of_kind("status", "cam-live")), WAIT
        )
    finally:
        stop.set()
        sub.stop()
    cams = result["cameras"]
    assert cams["cam-ok"]["state"] == "ended" and cams["cam-ok"]["frames"] == FRAMES_B
    assert cams["cam-broken"]["state"] == "failed" and cams["cam-broken"]["frames"] == 3
    assert "camera unplugged (test)" in cams["cam-broken"]["error"]
    assert cams["cam-live"]["state"] == "stopped" and cams["cam-live"]["frames"] >= 1
    assert [m.data["frame"] for m in collector.of_kind("events", "cam-ok")] == list(range(FRAMES_B))
    broken = collector.of_kind("status", "cam-broken")
    assert broken[-1].data["state"] == "offline"  # closed when it was dropped
    assert len(collector.of_kind("events", "cam-broken")) == 3
    live_stats = [m.data for m in collector.of_kind("stats", "cam-live")]
    assert live_stats and live_stats[-1]["extra"]["reconnects_source"] >= 1


# ---------------------------------------------------------------- the commands


def run_agent(*args, timeout=240):
    import tempfile

    cmd = [
        sys.executable,
        "-m",
        "fer_edge",
        "run",
        "--log-level",
        "INFO",
        "--data-dir",
        tempfile.mkdtemp(prefix="fer-edge-queue-"),
    ] + [str(a) for a in args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def check_device_topics(collector, device_id, frames):
    """The device's events (one per frame), tracks, state, stats and status, each schema-valid and on
    its own topics."""
    schemas = dict(
        (kind, load_schema(name))
        for kind, name in (
            ("events", "emotion-event"),
            ("tracks", "track"),
            ("state", "state"),
            ("stats", "stats"),
            ("status", "status"),
        )
    )
    for kind, schema in schemas.items():
        messages = collector.of_kind(kind, device_id)
        assert messages, (device_id, kind)
        for message in messages:
            assert message.topic == "fer-edge/{}/{}".format(device_id, kind)
            assert message.data.get("device_id") == device_id, message.data
            jsonschema.validate(message.data, schema)
    events = [m.data for m in collector.of_kind("events", device_id)]
    assert [e["frame"] for e in events] == list(range(frames))
    assert all(len(e["faces"]) == 2 for e in events)
    assert [m.data["state"] for m in collector.of_kind("status", device_id)][-1] == "offline"


def test_fer_edge_run_with_two_cameras_against_mosquitto(broker, videos, tmp_path):
    sub, collector = collect(broker.url)
    path = write_config(
        tmp_path / "cams.json",
        [
            {"source": videos[0], "device_id": "door-cam"},
            {"source": videos[1], "device_id": "hall-cam"},
            {"source": str(tmp_path / "missing.mp4"), "device_id": "gone-cam"},
        ],
        broker=broker.url,
        stats_interval=0.3,
        view="0",
    )
    try:
        proc = run_agent("--config", path, "--quiet", "--events-out", tmp_path / "results.jsonl")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert wait_until(
            lambda: all(
                collector.of_kind("status", d) and collector.of_kind("status", d)[-1].data["state"] == "offline"
                for d in ("door-cam", "hall-cam")
            ),
            WAIT,
        )
    finally:
        sub.stop()
    summary = json.loads(proc.stdout.strip().splitlines()[-1])["summary"]
    cams = summary["cameras"]
    assert cams["door-cam"]["frames"] == FRAMES_A and cams["hall-cam"]["frames"] == FRAMES_B
    assert cams["door-cam"]["state"] == cams["hall-cam"]["state"] == "ended"
    assert cams["gone-cam"]["state"] == "failed" and "missing.mp4" in cams["gone-cam"]["error"]
    assert "camera gone-cam failed" in proc.stderr and "left out of this run" in proc.stderr
    for device_id in ("door-cam", "hall-cam"):
        assert cams[device_id]["delivery"]["dropped"] == cams[device_id]["delivery"]["failed"] == 0
        assert cams[device_id]["delivery"]["acknowledged"] >= cams[device_id]["frames"]
    assert summary["classifier_calls"] == summary["rounds"] == FRAMES_B
    views = [cams[d]["view"] for d in ("door-cam", "hall-cam")]  # a live view per camera (port 0: free ports)
    assert all(v.startswith("http://127.0.0.1:") for v in views) and views[0] != views[1]
    check_device_topics(collector, "door-cam", FRAMES_A)
    check_device_topics(collector, "hall-cam", FRAMES_B)
    assert not collector.of_kind("events", "gone-cam") and not collector.of_kind("status", "gone-cam")
    # one MQTT connection per camera, each with its own client id (LWT and retained status per device)
    ids = re.findall(r"New client connected from \S+ as (fer-edge-[\w-]+)", broker.log_text())
    assert any(i.startswith("fer-edge-door-cam-") for i in ids) and any(i.startswith("fer-edge-hall-cam-") for i in ids)
    # --events-out: one file per camera
    for device_id, frames in (("door-cam", FRAMES_A), ("hall-cam", FRAMES_B)):
        lines = (tmp_path / "results.{}.jsonl".format(device_id)).read_text().splitlines()
        assert [json.loads(line)["frame"] for line in lines] == list(range(frames))


OLD_DEVICE_PYTHON = REPO / "build" / "old-pythons" / "py36-device" / "bin" / "python"


def run_device_agent(broker, videos, tmp_path, command, devices):
    """``command`` + ``--config <two cameras>`` against mosquitto; waits until both cameras are offline and
    checks each one's topics (every frame). Returns the finished process."""
    sub, collector = collect(broker.url)
    path = write_config(
        tmp_path / "cams.json",
        [{"source": videos[0], "device_id": devices[0]}, {"source": videos[1], "device_id": devices[1]}],
        broker=broker.url,
        data_dir=str(tmp_path / "queue"),
        stats_interval=0.3,
    )
    try:
        proc = subprocess.run(command + ["--config", path], cwd=REPO, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        assert wait_until(
            lambda: all(
                collector.of_kind("status", d) and collector.of_kind("status", d)[-1].data["state"] == "offline"
                for d in devices
            ),
            WAIT,
        )
    finally:
        sub.stop()
    check_device_topics(collector, devices[0], FRAMES_A)
    check_device_topics(collector, devices[1], FRAMES_B)
    return proc


@pytest.mark.parametrize("python", ["host", "py36-device"])
def test_python_m_jetson_takes_a_cameras_config(broker, videos, tmp_path, python):
    """The Jetson agent (no TensorRT here: ONNX Runtime, with its warning) runs the same config, also
    on the Jetson's old toolchain (Python 3.6.15, numpy 1.19.5, OpenCV 4.1.1, paho-mqtt 1.5.1)."""
    if python == "host":
        python = sys.executable
    elif OLD_DEVICE_PYTHON.is_file():
        python = str(OLD_DEVICE_PYTHON)
    else:
        pytest.skip("{} not built (make old-pythons builds it with pyenv's Python 3.6.15)".format(OLD_DEVICE_PYTHON))
    command = [python, "-m", "jetson", "--engine-dir", str(tmp_path / "engines")]
    proc = run_device_agent(broker, videos, tmp_path, command, ("jetson-a", "jetson-b"))
    stopped = [line for line in proc.stdout.splitlines() if "jetson.agent: stopped: " in line]
    assert len(stopped) == 1, proc.stdout[-3000:]
    summary = json.loads(stopped[0].split("jetson.agent: stopped: ", 1)[1])
    assert summary["classifier_calls"] == FRAMES_B and set(summary["cameras"]) == {"jetson-a", "jetson-b"}


def test_python_m_deeplens_takes_a_cameras_config(broker, videos, tmp_path):
    """``python3 -m deeplens`` (the agent of DeepLens hardware and of the Greengrass component's amd64
    manifest: OpenVINO by default) runs the same config: both cameras publish every frame."""
    proc = run_device_agent(broker, videos, tmp_path, [sys.executable, "-m", "deeplens"], ("lens-a", "lens-b"))
    totals = "frames {}, faces ".format(FRAMES_A + FRAMES_B)
    assert (
        totals in proc.stdout
        and "cameras: lens-a {} frames, lens-b {} frames".format(FRAMES_A, FRAMES_B) in proc.stdout
    ), proc.stdout[-2000:]
    assert all(
        "agent {}: source {}, model vgg13_bn_w0.5_balanced_flipavg on openvino".format(d, v) in proc.stderr
        for d, v in (("lens-a", videos[0]), ("lens-b", videos[1]))
    ), proc.stderr[-2000:]
