"""The one assembly function (``edge.agent.assembly.assemble``): the host agent, the Jetson agent and the
DeepLens Lambda all build their parts through it, with what each device supplies.

Real here: the shipped emotion model and BlazeFace on ONNX Runtime, sample videos, OpenCV; for the
Lambda, the same stand-ins as tests/test_deeplens.py (fixtures in conftest.py): the ``awscam``
and ``mo`` test doubles (tests/doubles, OpenVINO inside), the real greengrasssdk over the doubles
of the Greengrass core's IPC client to a recording HTTP server. The spy around ``assemble`` only
records its calls and returns what the real function built.
"""

import argparse
import importlib
import json
import os
import signal
import sys
import threading

import jsonschema
import pytest

import edge.agent.assembly
from edge.config.agent import load_config
from edge.detect.scheduled import ScheduledDetector
from edge.events.payloads import load_schema
from helpers import DEEPLENS_THING as THING

FRAMES = 8  # the Lambda's video


@pytest.fixture
def assembled(monkeypatch):
    """Records every edge.agent.assembly.assemble call: [(config, factories, Assembly)]."""
    calls = []
    real = edge.agent.assembly.assemble

    def spy(config, factories):
        result = real(config, factories)
        calls.append((config, factories, result))
        return result

    monkeypatch.setattr(edge.agent.assembly, "assemble", spy)
    return calls


@pytest.fixture
def signals():
    """The agents install SIGINT/SIGTERM handlers; put pytest's back afterwards."""
    saved = dict((sig, signal.getsignal(sig)) for sig in (signal.SIGINT, signal.SIGTERM))
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from fer_edge.samples import make_sample_video

    return make_sample_video(str(tmp_path_factory.mktemp("v") / "two.mp4"), frames=12)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """The video the awscam double plays to the Lambda."""
    from fer_edge.samples import make_sample_video

    return make_sample_video(str(tmp_path_factory.mktemp("v") / "faces.mp4"), frames=FRAMES)


def test_the_host_agent_goes_through_assemble(assembled, sample, signals, capsys):
    """`fer-edge run` (in process) -> edge.agent.service.serve -> edge.agent.assembly.assemble: the host's parts."""
    from edge.delivery.base import MemoryPublisher
    from edge.tracking.lifecycle import TrackLifecycle
    from fer_edge.cli import main

    assert (
        main(
            [
                "run",
                "--source",
                sample,
                "--device-id",
                "host-asm",
                "--no-embedded-broker",
                "--quiet",
                "--data-dir",
                "",
                "--log-level",
                "WARNING",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["summary"]
    assert len(assembled) == 1
    config, factories, assembly = assembled[0]
    assert config["source"] == sample and not assembly.multi
    (camera,) = assembly.cameras
    assert isinstance(camera.lifecycle, TrackLifecycle) and isinstance(camera.publisher, MemoryPublisher)
    assert camera.tracker.hysteresis_frames == config["hysteresis_frames"]
    assert assembly.classifier.runtime == "onnxruntime" and assembly.detector.runtime == "onnxruntime"
    # the default detection: the camera's own schedule (edge.detect.scheduled) on the one loaded detector
    assert isinstance(camera.detector, ScheduledDetector) and camera.detector.detector is assembly.detector
    # the run's messages, in the memory publisher the assembly made
    assert len(camera.publisher.events) == summary["frames"] == 12
    assert {m["type"] for m in camera.publisher.tracks} == {"new", "end"}
    assert summary["tracks"] == {"new": 2, "update": 0, "end": 2}
    assert camera.publisher.statuses[-1]["state"] == "offline"


def test_the_jetson_agent_passes_its_models_to_assemble(assembled, sample, signals, monkeypatch, tmp_path):
    """jetson.agent._serve hands make_classifier/make_face_detector to assemble as factories: called
    once each (also for two cameras), their results run every camera and are closed at the end."""
    import jetson.agent as jetson_agent

    made = {"classifier": [], "detector": [], "closed": []}

    def wrap(name, real):
        def factory(*args, **kwargs):
            part = real(*args, **kwargs)
            made[name].append(part)
            close = part.close
            part.close = lambda: (made["closed"].append(name), close())
            return part

        return factory

    monkeypatch.setattr(jetson_agent, "make_classifier", wrap("classifier", jetson_agent.make_classifier))
    monkeypatch.setattr(jetson_agent, "make_face_detector", wrap("detector", jetson_agent.make_face_detector))
    path = tmp_path / "cams.json"
    path.write_text(
        json.dumps(
            {
                "cameras": [
                    {"source": sample, "device_id": "jet-1"},
                    {"source": sample, "device_id": "jet-2", "detector_tiles": "2x1"},
                ],
                "data_dir": "",
                "log_level": "WARNING",
            }
        )
    )
    args = argparse.Namespace(precision="fp16", max_batch=16, engine_dir=str(tmp_path / "engines"))
    assert jetson_agent._serve(load_config(str(path), env={}), args) == 0
    assert len(made["classifier"]) == len(made["detector"]) == 1 and len(assembled) == 1
    _, _, assembly = assembled[0]
    assert assembly.classifier is made["classifier"][0] and assembly.detector is made["detector"][0]
    one, two = assembly.cameras
    # the same default as the host agent: a schedule per camera on the one TensorRT (here ONNX Runtime) detector
    assert isinstance(one.detector, ScheduledDetector) and one.detector.detector is made["detector"][0]
    assert two.detector.tiles == (2, 1) and two.detector.backend is made["detector"][0].backend
    assert [len(c.publisher.events) for c in assembly.cameras] == [12, 12]
    assert sorted(made["closed"]) == ["classifier", "detector"]


def test_the_lambda_goes_through_assemble_and_publishes_tracks_through_greengrass(
    deeplens_doubles, greengrass_core, deeplens_bundle, video, assembled, tmp_path, monkeypatch
):
    """The DeepLens Lambda (awscam source and backend, Greengrass publisher) now has the face
    lifecycle: track messages and the device state reach the core through the real greengrasssdk."""
    import shutil

    awscam, _ = deeplens_doubles
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    shutil.copy(deeplens_bundle["model"], str(artifacts / "model.tar.gz"))
    env = dict(
        os.environ,
        FER_EDGE_LAMBDA_AUTOSTART="0",
        FER_EDGE_MODEL=str(artifacts),
        FER_EDGE_DEEPLENS_FIFO="off",
        FER_EDGE_STATS_INTERVAL="0.5",
        FER_EDGE_LOG_LEVEL="WARNING",
        FER_EDGE_CONFIRM_FRAMES="2",
    )
    awscam.configure(video)
    sys.modules.pop("deeplens.lambda_agent", None)
    lambda_agent = importlib.import_module("deeplens.lambda_agent")
    from deeplens.greengrass_publisher import GreengrassPublisher

    stop, result = threading.Event(), {}
    thread = threading.Thread(target=lambda: result.update(lambda_agent.run(env, stop=stop)))
    thread.start()
    try:
        assert awscam.exhausted.wait(60), "the Lambda did not read the whole video"
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive() and result, "the Lambda did not return its summary"

    assert len(assembled) == 1
    config, factories, assembly = assembled[0]
    (camera,) = assembly.cameras
    assert isinstance(camera.publisher, GreengrassPublisher) and "publisher" in factories.borrowed
    assert type(camera.source).__name__ == "AwscamSource" and assembly.classifier.runtime == "awscam"
    assert config["detector"] == "haar" and camera.lifecycle is not None

    infer = "$aws/things/{}/infer".format(THING)
    messages = [m for t, m in greengrass_core.messages() if t == infer]
    assert {t for t, _ in greengrass_core.messages()} == {infer}  # FER_EDGE_DEEPLENS_FER_TOPICS off
    schemas = dict(
        ("fer-edge/" + name, load_schema(name)) for name in ("emotion-event", "stats", "status", "track", "state")
    )
    for message in messages:
        jsonschema.validate(message, schemas[message["schema"]])
    tracks = [m for m in messages if m["schema"] == "fer-edge/track"]
    news = [m for m in tracks if m["type"] == "new"]
    ends = [m for m in tracks if m["type"] == "end"]
    assert news and len(ends) == len(news) and all(m["device_id"] == THING for m in tracks)
    assert {m["after"]["id"] for m in news} == {m["after"]["id"] for m in ends}
    assert [m for m in messages if m["schema"] == "fer-edge/state"], "no device state"
    assert result["tracks"] == {
        "new": len(news),
        "update": len([m for m in tracks if m["type"] == "update"]),
        "end": len(ends),
    }
    assert result["frames"] == FRAMES
    statuses = [m for m in messages if m["schema"] == "fer-edge/status"]
    assert [s.get("phase") for s in statuses[1:3]] == ["loading-model", "running"]
    assert statuses[-1]["state"] == "offline" and statuses[-1]["reason"] == "shutdown"
