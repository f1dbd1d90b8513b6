"""The device agents under the devices' old Pythons and libraries, against a real mosquitto (issue 16).

Two venvs (``make old-pythons``, run by ``make test``; tests/device_envs): pyenv's Python 3.6.15
(JetPack 4.6's Python) and 3.7.16 (the DeepLens Lambda runtime's), each with the oldest libraries
the devices ship: numpy 1.19.5, opencv-python-headless 4.1.1.26, paho-mqtt 1.5.1, onnxruntime
1.10.0 (and on 3.7 OpenVINO 2023.1, the last release for 3.7). In each:

* the unpacked Jetson bundle (``fer_edge.bundles.jetson.build_bundle``, what ``fer-edge bundle jetson`` writes)
  runs its agent (``python -m jetson --config ...``) on a video file with the ONNX Runtime backend
  (no TensorRT here), BlazeFace and the emotion model from the bundle, with nothing but the bundle on
  ``PYTHONPATH``;
* the DeepLens standalone agent (``python -m deeplens``) runs from a copy of ``edge/`` and
  ``deeplens/`` alone, as docs/deeplens.md says to install it: with the OpenVINO IRs on 3.7 (its
  default runtime) and ONNX Runtime on 3.6 (no OpenVINO release with the ``openvino.Core`` API
  edge's backend uses exists for 3.6).

A subscriber on the host collects what reaches the broker: an event for every frame, every payload
valid against the schema its ``schema`` field names (edge/events/schema), ``online`` then ``offline``
status, and the same faces and emotions as the same agent run under the host's Python and current
libraries. A venv that is absent skips its tests, saying how to build it.
"""

import json
import shutil
import subprocess
import sys
import tarfile
import time

import jsonschema
import pytest

from fer_testdata import REPO, synthetic_faces
from helpers import Collector
from mqtt_broker import mosquitto_fixture

OLD_VENVS = REPO / "build" / "old-pythons"
DEVICE_ENVS = REPO / "tests" / "device_envs"
PYTHONS = {"py36-device": "3.6.15", "py37-device": "3.7.16"}
FRAMES = 6
WAIT = 30.0
SHIPPED_ONNX = REPO / "models" / "ferplus-vgg13bn-balanced-48" / "onnx" / "model.onnx"  # the default model
DETECTOR = REPO / "models" / "blazeface-back-256"

broker = mosquitto_fixture()


def pins(name):
    """{distribution: version} of the ``==`` lines of tests/device_envs/NAME.txt."""
    out = {}
    for line in (DEVICE_ENVS / (name + ".txt")).read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            dist, version = line.split("==")
            out[dist.strip()] = version.strip()
    return out


def old_python(name):
    python = OLD_VENVS / name / "bin" / "python"
    if not (OLD_VENVS / name / ".installed").is_file() or not python.exists():
        pytest.skip(
            "{} not built: run `make old-pythons` (needs pyenv's Python {}; `make test` builds it)".format(
                OLD_VENVS / name, PYTHONS[name]
            )
        )
    return str(python)


def device_env(tmp_path, root):
    """A bare environment: the tree under test alone on PYTHONPATH, nothing of the host's."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(root),
        "PYTHONDONTWRITEBYTECODE": "1",
        "FER_EDGE_ENGINE_DIR": str(tmp_path / "engines"),
    }


@pytest.fixture(scope="module", params=sorted(PYTHONS))
def device_python(request):
    """(venv name, its python): first in every test, so that an absent venv skips before the rest is built."""
    return request.param, old_python(request.param)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from fer_edge.samples import make_sample_video

    return make_sample_video(str(tmp_path_factory.mktemp("video") / "faces.mp4"), frames=FRAMES)


@pytest.fixture(scope="module")
def jetson_root(tmp_path_factory):
    """The Jetson bundle of the shipped models, built and unpacked."""
    from fer_edge.bundles.jetson import build_bundle

    dist = tmp_path_factory.mktemp("jetson-dist")
    tar_path = build_bundle(str(dist))
    with tarfile.open(tar_path) as tar:
        tar.extractall(str(dist / "unpacked"))
    (root,) = [p for p in (dist / "unpacked").iterdir() if p.is_dir()]
    return root


@pytest.fixture(scope="module")
def deeplens_root(tmp_path_factory):
    """edge/ and deeplens/ copied alone, with the models the standalone path runs: the emotion
    model's OpenVINO IR (``fer-edge convert openvino``) and ONNX, BlazeFace's IR and ONNX."""
    from convert.formats import converter

    root = tmp_path_factory.mktemp("deeplens-device")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("edge", "deeplens"):
        shutil.copytree(str(REPO / package), str(root / package), ignore=ignore)
    models = root / "models"
    models.mkdir()
    converter("openvino")(
        str(REPO / "models" / "ferplus-vgg13bn-balanced-48" / "saved_model"),
        str(models / "openvino"),
        faces=synthetic_faces(16, seed=3),
    )
    shutil.copy(str(SHIPPED_ONNX), str(models / "model.onnx"))
    shutil.copytree(str(DETECTOR / "openvino"), str(models / "detector-openvino"))
    shutil.copy(str(DETECTOR / "onnx" / "model.onnx"), str(models / "detector.onnx"))
    return root


def run_agent(python, args, root, broker, device, tmp_path):
    """Run an agent to the end of the video; (process, messages collected on the broker)."""
    from edge.delivery.subscribe import subscribe

    collector = Collector(timeout=WAIT)
    sub = subscribe(broker.url, device_id=device, on_message=collector)
    try:
        assert sub.wait_subscribed(WAIT), sub.last_error
        proc = subprocess.run(
            [python] + [str(a) for a in args],
            cwd=str(root),
            env=device_env(tmp_path, root),
            capture_output=True,
            text=True,
            timeout=240,
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-6000:]
        collector.wait(
            lambda ms: (
                len([m for m in ms if m.kind == "events"]) >= FRAMES
                and any(m.kind == "status" and (m.data or {}).get("state") == "offline" for m in ms)
            )
        )
        time.sleep(0.3)  # anything late (nothing should be)
        return out, list(collector.messages)
    finally:
        sub.stop()


def check_messages(messages, device):
    """Every payload valid against its schema; one event per frame; online then offline."""
    from edge.events.payloads import load_schema
    from edge.labels import EMOTIONS

    schemas = {}
    for m in messages:
        assert m.data is not None, m.payload[:200]
        kind = m.data["schema"].split("/", 1)[1]
        if kind not in schemas:
            schemas[kind] = load_schema(kind)
        jsonschema.validate(m.data, schemas[kind])
        assert m.data["device_id"] == device and m.device_id == device
    events = sorted((m.data for m in messages if m.kind == "events"), key=lambda e: e["frame"])
    assert [e["frame"] for e in events] == list(range(FRAMES))
    assert sum(len(e["faces"]) for e in events) >= FRAMES  # the video holds two faces per frame
    assert all(f["emotion"] in EMOTIONS for e in events for f in e["faces"])
    states = [m.data["state"] for m in messages if m.kind == "status"]
    assert states[0] == "online" and states[-1] == "offline", states
    return events


def faces_of(events):
    """(frame, rounded box, emotion) of every face, in a stable order."""
    return sorted((e["frame"], tuple(f["box"]), f["emotion"]) for e in events for f in e["faces"])


def same_faces(old, new, tolerance=3):
    """The old stack finds the same faces (boxes within ``tolerance`` px) with the same emotions."""
    a, b = faces_of(old), faces_of(new)
    assert len(a) == len(b), (a, b)
    for (fa, ba, ea), (fb, bb, eb) in zip(a, b):
        assert fa == fb and ea == eb and max(abs(x - y) for x, y in zip(ba, bb)) <= tolerance, (a, b)


def test_device_venv_has_the_oldest_pinned_libraries(device_python):
    name, python = device_python
    probe = (
        "import json, sys, numpy, cv2, paho.mqtt, onnxruntime\n"
        "print(json.dumps({'python': sys.version.split()[0], 'numpy': numpy.__version__, "
        "'opencv-python-headless': cv2.__version__, 'paho-mqtt': paho.mqtt.__version__, "
        "'onnxruntime': onnxruntime.__version__}))\n"
    )
    proc = subprocess.run(
        [python, "-c", probe], capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}
    )
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    want = pins(name)
    assert found["python"] == PYTHONS[name]
    assert found["numpy"] == want["numpy"] == "1.19.5"
    assert want["opencv-python-headless"].startswith(found["opencv-python-headless"] + ".")  # 4.1.1 of 4.1.1.26
    assert found["paho-mqtt"] == want["paho-mqtt"] and found["onnxruntime"] == want["onnxruntime"]


@pytest.fixture(scope="module")
def host_runs(jetson_root, deeplens_root, video, broker, tmp_path_factory):
    """The same agents under the host's Python and libraries: the reference events."""
    out = {}
    tmp = tmp_path_factory.mktemp("host-runs")
    out["jetson"] = check_messages(
        run_agent(
            sys.executable,
            jetson_args(jetson_root, video, broker, "host-jetson", tmp / "j"),
            jetson_root,
            broker,
            "host-jetson",
            tmp,
        )[1],
        "host-jetson",
    )
    for runtime in ("openvino", "onnxruntime"):
        device = "host-deeplens-" + runtime
        out[runtime] = check_messages(
            run_agent(
                sys.executable,
                deeplens_args(deeplens_root, video, broker, device, runtime, tmp / device),
                deeplens_root,
                broker,
                device,
                tmp,
            )[1],
            device,
        )
    return out


def jetson_args(root, video, broker, device, data_dir):
    config = data_dir.parent / (device + ".json")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        json.dumps(
            {
                "source": str(video),
                "broker": broker.url,
                "device_id": device,
                "publish": "every-frame",
                "stats_interval": 0,
                "data_dir": str(data_dir),
                "log_level": "INFO",
            }
        )
    )
    return ["-m", "jetson", "--config", config]


def deeplens_args(root, video, broker, device, runtime, data_dir):
    models = root / "models"
    if runtime == "openvino":
        model, detector = models / "openvino" / "model.xml", models / "detector-openvino" / "model.xml"
    else:
        model, detector = models / "model.onnx", models / "detector.onnx"
    return [
        "-m",
        "deeplens",
        "--source",
        video,
        "--model",
        model,
        "--detector-model",
        detector,
        "--runtime",
        runtime,
        "--broker",
        broker.url,
        "--device-id",
        device,
        "--publish",
        "every-frame",
        "--stats-interval",
        "0",
        "--data-dir",
        data_dir,
    ]


def test_jetson_bundle_agent_publishes_on_the_old_python(
    device_python, jetson_root, video, broker, host_runs, tmp_path
):
    name, python = device_python
    device = "jetson-" + name
    out, messages = run_agent(
        python,
        jetson_args(jetson_root, video, broker, device, tmp_path / "data"),
        jetson_root,
        broker,
        device,
        tmp_path,
    )
    assert "ONNX Runtime" in out and '"frames": {}'.format(FRAMES) in out, out[-3000:]
    assert str(jetson_root / "model" / "model.onnx") in out and str(jetson_root / "model" / "detector.onnx") in out
    events = check_messages(messages, device)
    assert all(e["model"]["id"] == "vgg13_bn_w0.5_balanced_flipavg" for e in events)
    same_faces(events, host_runs["jetson"])


def test_deeplens_standalone_agent_publishes_on_the_old_python(
    device_python, deeplens_root, video, broker, host_runs, tmp_path
):
    name, python = device_python
    runtime = "openvino" if name.startswith("py37") else "onnxruntime"
    device = "deeplens-" + name
    out, messages = run_agent(
        python,
        deeplens_args(deeplens_root, video, broker, device, runtime, tmp_path / "data"),
        deeplens_root,
        broker,
        device,
        tmp_path,
    )
    assert "frames {}, faces".format(FRAMES) in out and "on {}".format(runtime) in out, out[-3000:]
    events = check_messages(messages, device)
    same_faces(events, host_runs[runtime])
