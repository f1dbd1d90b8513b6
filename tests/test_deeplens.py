"""The AWS DeepLens adapter: bundle, deployment (awscli against a local moto server) and the Lambda
loop driven by test doubles of the device and Greengrass core modules.

Real here: fer-edge's converters (a tiny Keras model exported like a real one, converted to the
DeepLens tarball and the OpenVINO IR), OpenCV (Haar faces in a generated video), the OpenVINO
runtime and converter (inside the awscam/mo doubles), greengrasssdk 1.6.1 from PyPI, awscli and
moto's server. Doubles (tests/doubles, see its README): ``awscam``, ``mo``, and the Greengrass
core's ``greengrass_common`` / ``greengrass_ipc_python_sdk``, which talk to a recording HTTP
server standing in for the core. Those stand-ins, the tiny model and its bundle are fixtures in
conftest.py (tests/test_assembly.py runs the Lambda on them too).
"""

import ast
import importlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import zipfile

import cv2
import jsonschema
import numpy as np
import pytest

from edge import metadata as md
from edge.events.payloads import load_schema
from fer_testdata import REPO
from helpers import DEEPLENS_THING as THING
from helpers import DOUBLES, wait_until

FRAMES = 8
FORBIDDEN = {"paho", "onnxruntime", "tensorflow", "keras", "train", "fer_edge", "convert", "tf2onnx", "onnx"}


# ---------------------------------------------------------------- the model


@pytest.fixture(scope="module")
def openvino_xml(tiny_savedmodel, deeplens_faces, tmp_path_factory):
    from convert.formats import converter

    return converter("openvino")(tiny_savedmodel, str(tmp_path_factory.mktemp("ov") / "out"), faces=deeplens_faces)


@pytest.fixture(scope="module")
def reference(tiny_savedmodel, deeplens_faces):
    from convert.common import SavedModelSource
    from edge.preprocess import prepare_faces

    source = SavedModelSource(tiny_savedmodel)
    return source.predict(prepare_faces(deeplens_faces, source.meta))


# ---------------------------------------------------------------- bundle


def _imports(tree):
    """(top-level module name, inside a function?) of every import in a parsed file."""
    inside = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside.update(id(n) for n in ast.walk(fn) if n is not fn)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], id(node) in inside
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.module.split(".")[0], id(node) in inside


def test_bundle_zip_holds_only_what_the_lambda_runs(deeplens_bundle, tmp_path):
    assert os.path.isfile(deeplens_bundle["model"]) and os.path.isfile(md.sidecar_path(deeplens_bundle["model"]))
    with tarfile.open(deeplens_bundle["model"], "r:gz") as tar:
        assert sorted(tar.getnames()) == ["model.pb", "model.pb.fer_edge.json"]
    with zipfile.ZipFile(deeplens_bundle["zip"]) as zf:
        names = set(zf.namelist())
        zf.extractall(str(tmp_path / "zip"))
    assert "lambda_function.py" in names  # at the root: handler lambda_function.function_handler
    assert {
        "edge/events/schema/emotion-event.schema.json",
        "edge/events/schema/stats.schema.json",
        "edge/events/schema/status.schema.json",
    } <= names
    assert {
        "deeplens/awscam_source.py",
        "deeplens/awscam_backend.py",
        "deeplens/stream.py",
        "deeplens/greengrass_publisher.py",
        "deeplens/lambda_agent.py",
        "greengrasssdk/IoTDataPlane.py",
        "greengrasssdk/LICENSE",
    } <= names
    host_only = {
        "fer_edge/bundles/deeplens_deploy.py",
        "fer_edge/bundles/deeplens.py",
        "edge/delivery/subscribe.py",
        "edge/agent/service.py",
        "edge/backends/onnxruntime_backend.py",
        "edge/backends/openvino_backend.py",
    }
    assert not names & host_only
    assert not [n for n in names if n.split("/")[0] in ("train", "convert", "fer_edge", "jetson", "tests")]
    lazy_ok = {
        ("edge/delivery/client.py", "paho"),
        ("edge/backends/__init__.py", "onnx"),
        ("edge/backends/__init__.py", "onnxruntime"),
    }
    bad = []
    for name in sorted(n for n in names if n.endswith(".py")):
        tree = ast.parse((tmp_path / "zip" / name).read_text(encoding="utf-8"))
        for top, in_function in _imports(tree):
            if top in FORBIDDEN and not (in_function and (name, top) in lazy_ok):
                bad.append((name, top, in_function))
    assert not bad, bad
    # Python 3.6 syntax and library for every .py in the zip (the device runs 3.7; JetPack-era 3.6 too)
    vermin = os.path.join(os.path.dirname(sys.executable), "vermin")
    proc = subprocess.run(
        [
            vermin,
            "--no-tips",
            "--violations",
            "-t=3.6-",
            "--backport",
            "dataclasses",
            "--backport",
            "typing",
            str(tmp_path / "zip"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the zip is self-contained: imported from its root (with the awscam double), its own copies load
    # and nothing heavy comes along
    probe = (
        "import sys, lambda_function, edge, deeplens.lambda_agent, greengrasssdk\n"
        "print(lambda_function.thread, edge.__file__, deeplens.__file__, greengrasssdk.__file__)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {!r})\n"
        "print('heavy', heavy)\n"
    ).format(sorted(FORBIDDEN))
    env = dict(os.environ, FER_EDGE_LAMBDA_AUTOSTART="0", PYTHONPATH=DOUBLES)
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=str(tmp_path / "zip"), env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()[-2:]
    assert first.startswith("None ") and all(p.startswith(str(tmp_path / "zip")) for p in first.split()[1:])
    assert second == "heavy []"
    # ... and for the host tools in deeplens/ too (the Makefile's vermin target covers the folder)
    proc = subprocess.run(
        [vermin, "--no-tips", "--violations", "-t=3.6-", str(REPO / "deeplens")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bundle_refuses_a_bad_model_artifact(tmp_path):
    from fer_edge.bundles.deeplens import BundleError, build_bundle

    bogus = tmp_path / "model.tar.gz"
    with tarfile.open(str(bogus), "w:gz") as tar:
        tar.add(__file__, arcname="model.pb")  # a .pb but no metadata
    with pytest.raises(BundleError, match="no metadata model.pb.fer_edge.json"):
        build_bundle(str(tmp_path / "out"), model_artifact=str(bogus), log=None)


# ---------------------------------------------------------------- deployment (awscli -> moto)


def test_deploy_with_awscli_creates_then_updates_and_publishes(deeplens_bundle, moto_endpoint, aws_env):
    import boto3

    from fer_edge.bundles.deeplens_deploy import deploy

    kw = dict(endpoint_url=moto_endpoint, region_name="us-east-1")
    iam = boto3.client("iam", **kw)
    role = iam.create_role(
        RoleName="AWSDeepLensLambdaRole",
        Path="/service-role/",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )["Role"]
    logs = []
    first = deploy(
        "deeplens-fer-edge-test",
        "deeplens-fer-edge",
        zip_path=deeplens_bundle["zip"],
        model_artifact=deeplens_bundle["model"],
        region="us-east-1",
        endpoint_url=moto_endpoint,
        log=logs.append,
    )
    assert first["created"] and first["version"] == "1"
    assert first["s3_uri"] == "s3://deeplens-fer-edge-test/fer-edge/model.tar.gz"
    assert first["version_arn"].endswith(":function:deeplens-fer-edge:1")
    text = "\n".join(logs)
    assert "$ aws s3 mb s3://deeplens-fer-edge-test" in text and "$ aws lambda create-function" in text
    assert "Import model" in text and "Externally trained" in text and "version 1" in text

    s3 = boto3.client("s3", **kw)
    head = s3.head_object(Bucket="deeplens-fer-edge-test", Key="fer-edge/model.tar.gz")
    assert head["ContentLength"] == os.path.getsize(deeplens_bundle["model"])
    fn = boto3.client("lambda", **kw).get_function(FunctionName="deeplens-fer-edge")["Configuration"]
    assert fn["Handler"] == "lambda_function.function_handler" and fn["Runtime"] == "python3.7"
    assert fn["Role"] == role["Arn"]  # found by name: the role DeepLens registration creates

    second = deploy(
        "deeplens-fer-edge-test",
        "deeplens-fer-edge",
        zip_path=deeplens_bundle["zip"],
        model_artifact=deeplens_bundle["model"],
        region="us-east-1",
        endpoint_url=moto_endpoint,
        log=None,
    )
    assert not second["created"] and second["version"] == "2"
    versions = boto3.client("lambda", **kw).list_versions_by_function(FunctionName="deeplens-fer-edge")["Versions"]
    assert {"1", "2"} <= {v["Version"] for v in versions}


def test_deploy_refuses_bad_names_before_calling_aws(deeplens_bundle):
    from fer_edge.bundles.deeplens_deploy import DeployError, deploy

    files = deeplens_bundle["zip"], deeplens_bundle["model"]
    with pytest.raises(DeployError, match="starts with 'deeplens-'"):
        deploy("my-models", "deeplens-fer-edge", *files, "us-east-1", aws="/nonexistent/aws")
    with pytest.raises(DeployError, match="named deeplens"):
        deploy("deeplens-x1", "fer-edge", *files, "us-east-1", aws="/nonexistent/aws")
    with pytest.raises(DeployError, match="not a valid S3 bucket name"):
        deploy("deeplens-Upper", "deeplens-fer", *files, "us-east-1", aws="/nonexistent/aws")


# ---------------------------------------------------------------- the backend on the doubles


def test_awscam_backend_optimizes_the_frozen_graph_and_matches_the_savedmodel(
    deeplens_doubles, deeplens_bundle, openvino_xml, deeplens_faces, reference, tmp_path
):
    awscam, mo = deeplens_doubles
    from deeplens.awscam_backend import AwscamBackend
    from edge.classifier import EmotionClassifier

    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    shutil.copy(deeplens_bundle["model"], str(artifacts / "model.tar.gz"))  # no sidecar beside: read from the tarball
    del mo.calls[:]
    clf = EmotionClassifier(AwscamBackend(str(artifacts)))
    # a 3-channel graph: no channel option, AWS's TensorFlow sample call (plus the folders: not in /opt/awscam)
    assert [c["platform"] for c in mo.calls] == ["tf"] and "--img-channels" not in mo.calls[0]["aux_inputs"]
    assert (mo.calls[0]["model_name"], mo.calls[0]["width"], mo.calls[0]["height"]) == ("model", 48, 48)
    assert clf.backend.xml == str(artifacts / "tf_model_FP16_FUSED.xml")
    probs = clf.predict(deeplens_faces)
    assert np.abs(probs - reference).max() <= 1e-3 and (probs.argmax(1) == reference.argmax(1)).all()
    model = awscam.Model.instances[-1]
    assert model.loading_config == {"GPU": 1}
    assert set(model.inputs) == {((48, 48, 3), "float32")}  # one H x W x 3 face per doInference call
    # a second start reuses the IR instead of optimizing again
    AwscamBackend(str(artifacts / "model.pb"))
    assert len(mo.calls) == 1
    # the IR of the openvino converter (NCHW metadata) runs through the same path
    ov_probs = EmotionClassifier(AwscamBackend(openvino_xml, gpu=False)).predict(deeplens_faces)
    assert np.abs(ov_probs - reference).max() <= 1e-3
    assert awscam.Model.instances[-1].loading_config == {"GPU": 0}


def test_awscam_backend_reports_optimizer_failure(deeplens_doubles, deeplens_bundle, tmp_path):
    from deeplens.awscam_backend import AwscamBackend, extract_artifact
    from edge.backends.base import BackendError

    shutil.copy(deeplens_bundle["model"], str(tmp_path / "model.tar.gz"))
    pb = extract_artifact(str(tmp_path / "model.tar.gz"))
    # options the optimizer refuses (a precision it does not know): tried again without them
    _, mo = deeplens_doubles
    del mo.calls[:]
    AwscamBackend(pb, mo_aux={"--precision": "FP8"}, reuse_ir=False)
    assert [c["aux_inputs"].get("--precision") for c in mo.calls] == ["FP8", None]
    with open(pb, "r+b") as handle:  # a damaged graph: both attempts fail, the error code is reported
        handle.truncate(100)
    with pytest.raises(BackendError, match="model optimizer could not convert it.*error 2"):
        AwscamBackend(pb, mo_aux={"--img-channels": 3}, reuse_ir=False)
    os.makedirs(str(tmp_path / "empty"))
    with pytest.raises(BackendError, match="no fer-edge model in"):
        AwscamBackend(str(tmp_path / "empty"))


def test_pick_output_names_the_layers_when_ambiguous():
    from deeplens.awscam_backend import pick_output
    from edge.backends.base import BackendError

    assert pick_output({"prob/Softmax": np.ones(8)}, "probabilities", 8).shape == (8,)
    assert pick_output({"probabilities": np.ones(8), "x": np.ones(8)}, "probabilities", 8).shape == (8,)
    with pytest.raises(BackendError, match=r"layers \['a', 'b'\]"):
        pick_output({"a": np.ones(8), "b": np.ones(8)}, "probabilities", 8)
    with pytest.raises(BackendError, match="holds 3 values"):
        pick_output({"a": np.ones(3)}, "probabilities", 8)


# ---------------------------------------------------------------- source, stream, publisher


class FlakyCamera(object):
    """A camera object for AwscamSource: fails, then delivers frames."""

    def __init__(self, fails):
        self.fails = fails
        self.calls = 0

    def getLastFrame(self):
        self.calls += 1
        if self.calls <= self.fails:
            return False, None
        return True, np.full((4, 6, 3), self.calls, np.uint8)


def test_awscam_source_skips_failed_reads_counts_them_and_stops():
    from deeplens.awscam_source import AwscamSource

    stop = threading.Event()
    source = AwscamSource(camera=FlakyCamera(3), stop=stop, min_backoff=0.01, max_backoff=0.02)
    frame = source.read()
    assert frame.index == 0 and frame.image[0, 0, 0] == 4
    assert source.corrupt == 3 and source.reconnects == 1 and source.live
    assert source.read().index == 1
    stop.set()
    assert source.read() is None and not source.stopping.is_set()  # the caller's event is only watched
    gone = AwscamSource(camera=FlakyCamera(10**6), min_backoff=0.01, max_backoff=0.01, max_failures=5)
    assert gone.read() is None and gone.corrupt == 5


def read_fifo(path, into, stop):
    """Reader thread: open the FIFO (waits for the writer), collect everything until EOF."""
    while not os.path.exists(path) and not stop.is_set():
        time.sleep(0.01)
    with open(path, "rb") as fifo:
        while True:
            chunk = fifo.read(65536)
            if not chunk:
                return
            into.append(chunk)


def jpegs(data):
    """Split concatenated JPEGs (SOI ff d8 ... EOI ff d9) and decode them."""
    out = []
    start = data.find(b"\xff\xd8")
    while start >= 0:
        end = data.find(b"\xff\xd9", start)
        while end >= 0:
            image = cv2.imdecode(np.frombuffer(data[start : end + 2], np.uint8), cv2.IMREAD_COLOR)
            if image is not None:
                break
            end = data.find(b"\xff\xd9", end + 2)
        assert end >= 0, "a JPEG without its EOI marker"
        out.append(image)
        start = data.find(b"\xff\xd8", end + 2)
    return out


def test_project_stream_waits_for_a_reader_and_never_blocks_the_loop(tmp_path):
    from deeplens.stream import ProjectStream

    path = str(tmp_path / "results.mjpeg")
    stream = ProjectStream(path, resolution="64x48", retry_interval=0.02)
    image = np.zeros((120, 160, 3), np.uint8)
    t0 = time.time()
    for _ in range(20):  # no reader yet: returns at once, keeps only the newest frame
        stream.write(image, [])
    assert time.time() - t0 < 0.5 and stream.dropped >= 18 and stream.written == 0
    for _ in range(100):
        if os.path.exists(path):
            break
        time.sleep(0.01)
    import stat

    assert stat.S_ISFIFO(os.stat(path).st_mode)  # created by the writer
    chunks, stop = [], threading.Event()
    reader = threading.Thread(target=read_fifo, args=(path, chunks, stop))
    reader.start()
    for i in range(5):
        stream.write(
            image + i,
            [
                {
                    "box": [10, 10, 40, 40],
                    "track_id": 1,
                    "emotion": "happiness",
                    "confidence": 0.9,
                    "scores": {"happiness": 0.9, "neutral": 0.1},
                }
            ],
        )
        time.sleep(0.1)
    stream.close()
    reader.join(5)
    frames = jpegs(b"".join(chunks))
    assert frames and all(f.shape == (48, 64, 3) for f in frames)
    assert stream.readers == 1 and stream.written == len(frames)


def test_greengrass_publisher_needs_a_thing_name(deeplens_doubles, monkeypatch):
    from deeplens.greengrass_publisher import GreengrassError, GreengrassPublisher

    monkeypatch.delenv("AWS_IOT_THING_NAME", raising=False)
    with pytest.raises(GreengrassError, match="AWS_IOT_THING_NAME is not set"):
        GreengrassPublisher()


# ---------------------------------------------------------------- the Lambda, end to end on doubles


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from fer_edge.samples import make_sample_video

    return make_sample_video(str(tmp_path_factory.mktemp("v") / "faces.mp4"), frames=FRAMES)


def test_lambda_runs_the_agent_on_the_doubles(
    deeplens_doubles, greengrass_core, deeplens_bundle, video, tmp_path, monkeypatch
):
    awscam, mo = deeplens_doubles
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    shutil.copy(deeplens_bundle["model"], str(artifacts / "model.tar.gz"))
    fifo = str(tmp_path / "results.mjpeg")
    env = {
        "FER_EDGE_LAMBDA_AUTOSTART": "0",
        "FER_EDGE_MODEL": str(artifacts),
        "FER_EDGE_DEEPLENS_FIFO": fifo,
        "FER_EDGE_DEEPLENS_FER_TOPICS": "1",
        "FER_EDGE_STATS_INTERVAL": "0.2",
        "FER_EDGE_PUBLISH": "every-frame",
        "FER_EDGE_LOG_LEVEL": "WARNING",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    awscam.configure(video, fail_first=2)

    sys.modules.pop("deeplens.lambda_function", None)
    lambda_function = importlib.import_module("deeplens.lambda_function")
    assert lambda_function.thread is None  # FER_EDGE_LAMBDA_AUTOSTART=0: nothing started at import
    assert lambda_function.function_handler({"any": "event"}, None) is None

    chunks, reader_stop = [], threading.Event()
    reader = threading.Thread(target=read_fifo, args=(fifo, chunks, reader_stop), daemon=True)
    reader.start()
    stop = threading.Event()
    thread = lambda_function.start(env=dict(os.environ), stop=stop)
    assert awscam.exhausted.wait(60), "the Lambda did not read the whole video"
    wait_until(
        lambda: (
            sum(1 for t, m in greengrass_core.messages() if m.get("schema") == "fer-edge/emotion-event") >= 2 * FRAMES
        ),
        20,
        step=0.05,
    )
    stop.set()
    thread.join(30)
    assert not thread.is_alive()
    reader.join(10)

    # what reached the core, through the real greengrasssdk: IPC posts to the router, per topic
    assert greengrass_core.posts and all(
        p["path"] == "/2016-11-01/functions/arn:aws:lambda:::function:GGRouter"
        and p["type"] == "Event"
        and p["auth"] == "test-token"
        for p in greengrass_core.posts
    )
    messages = greengrass_core.messages()
    infer = "$aws/things/{}/infer".format(THING)
    assert {t for t, _ in messages} == {infer} | {
        "fer-edge/{}/{}".format(THING, kind) for kind in ("events", "stats", "status", "tracks", "state")
    }
    on_infer = [m for t, m in messages if t == infer]
    kinds = ("emotion-event", "stats", "status", "track", "state")
    schemas = dict(("fer-edge/" + name, load_schema(name)) for name in kinds)
    for m in on_infer:
        jsonschema.validate(m, schemas[m["schema"]])
    # the face lifecycle (edge.agent.assembly gives the Lambda every part the host agent has)
    tracks = [m for m in on_infer if m["schema"] == "fer-edge/track"]
    assert tracks and {m["type"] for m in tracks} >= {"new", "end"}
    assert [m for t, m in messages if t == "fer-edge/{}/tracks".format(THING)] == tracks
    events = [m for m in on_infer if m["schema"] == "fer-edge/emotion-event"]
    statuses = [m for m in on_infer if m["schema"] == "fer-edge/status"]
    stats = [m for m in on_infer if m["schema"] == "fer-edge/stats"]
    assert len(events) == FRAMES and [e["frame"] for e in events] == list(range(FRAMES))
    assert all(e["device_id"] == THING and e["model"]["id"] == "tiny-deeplens" for e in events)
    assert sum(len(e["faces"]) for e in events) >= FRAMES  # the video shows two faces; Haar finds them
    assert [s["state"] for s in statuses][0] == "online" and statuses[-1]["state"] == "offline"
    assert statuses[1]["phase"] == "loading-model" and statuses[2]["phase"] == "running"
    assert statuses[-1]["reason"] == "shutdown"
    assert stats and sum(s["frames"] for s in stats) == FRAMES  # per-window counts
    assert stats[-1]["extra"]["corrupt_frames"] >= 2 + 1  # the 2 failed reads at start, those after the video
    assert [m for t, m in messages if t == "fer-edge/{}/events".format(THING)] == events

    # the device modules as the Lambda used them
    assert mo.calls[-1]["platform"] == "tf" and "--img-channels" not in mo.calls[-1]["aux_inputs"]
    model = awscam.Model.instances[-1]
    assert model.loading_config == {"GPU": 1} and {s for s, _ in model.inputs} == {(48, 48, 3)}

    # the project stream: annotated JPEG frames in the FIFO, resized to 480p
    frames = jpegs(b"".join(chunks))
    assert frames and all(f.shape == (480, 858, 3) for f in frames)


def test_standalone_agent_runs_the_openvino_ir(openvino_xml, video, tmp_path):
    """`python3 -m deeplens` (no Greengrass, no awscam): the edge agent with the IR on OpenVINO."""
    from deeplens.__main__ import main

    assert (
        main(
            ["--source", video, "--model", openvino_xml, "--device-id", "deeplens-standalone", "--log-level", "WARNING"]
        )
        == 0
    )
    assert main(["--source", video, "--publish", "sometimes"]) == 2
    # detector options that do not fit the camera's frames: a clear error, exit 2 (not a frame-by-frame retry)
    assert main(["--source", video, "--model", openvino_xml, "--min-face", "5000", "--log-level", "ERROR"]) == 2


def test_greengrass_publisher_sends_tracks_and_state_and_refuses_retained(greengrass_core, caplog):
    """Through the real greengrasssdk to the core stand-in: track messages and the state go to the
    infer topic (and the fer-edge topics); retained messages (Home Assistant discovery) cannot."""
    from deeplens.greengrass_publisher import GreengrassPublisher
    from edge.events.payloads import state_payload

    pub = GreengrassPublisher(fer_topics=True)
    pub.start()
    track = {"schema": "fer-edge/track", "type": "new", "after": {"id": "ab-1"}}
    assert pub.publish_track(track)
    assert pub.publish_state(state_payload(THING, 1, {"happiness": 1}, 12.5, ["ab-1"]))
    assert pub.publish_retained("homeassistant/sensor/x/faces/config", {"name": "Faces"}) is False
    assert pub.publish_retained("homeassistant/sensor/x/fps/config", {"name": "fps"}) is False
    pub.close()
    messages = greengrass_core.messages()
    infer = "$aws/things/{}/infer".format(THING)
    assert (infer, track) in messages and ("fer-edge/{}/tracks".format(THING), track) in messages
    states = [m for t, m in messages if t == "fer-edge/{}/state".format(THING)]
    assert len(states) == 1 and states[0]["faces"] == 1
    assert not [t for t, _ in messages if t.startswith("homeassistant/")]
    assert sum("cannot be published through Greengrass" in r.getMessage() for r in caplog.records) == 1
    assert pub.counters["published"] == 1  # the track; status and state are not counted
