"""The Jetson adapter: TensorRT backend (fake engines here; the real one skips without TensorRT),
the agent's runtime choice and CLI, the camera check, and the device bundle (contents, Python 3.6
syntax, no host-only imports, install.sh --dry-run in a fake root, the bundled agent running).

No TensorFlow: the model is a tiny ONNX built with onnx.helper (metadata embedded like
`fer-edge convert onnx` does).
"""

import ast
import hashlib
import json
import logging
import os
import subprocess
import sys
import tarfile

import cv2
import numpy as np
import pytest

from edge import metadata as md
from edge.backends.base import BackendError, module_installed
from edge.config.agent import BY_NAME, load_config
from fer_edge.bundles.jetson import BundleError, build_bundle
from fer_testdata import REPO
from jetson import engine as je
from jetson import trt_backend as tb
from jetson.agent import choose_runtime, make_classifier
from trt_doubles import (
    NAMES,
    FakeEngine8,
    FakeEngine10,
    install_fakes,
    reference_probs,
    tiny_meta,
    write_engine,
    write_tiny_onnx,
)

TRT_SKIP = "TensorRT/pycuda not installed: runs on a Jetson or a host with an NVIDIA GPU"
VERSION = "0.0.test"
TOP = "fer-edge-jetson-" + VERSION
HOST_ONLY_MODULES = {"tensorflow", "keras", "train", "fer_edge", "tf2onnx", "onnx"}
DEVICE_MODULES = {"numpy", "cv2", "edge", "jetson"}
# imported only inside functions, where the device provides them (or guarded)
LAZY_RUNTIME_MODULES = {"tensorrt", "pycuda", "paho", "onnxruntime", "openvino", "ssl"}
RELEASE_R32_7_1 = "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64, DATE: Sat Feb 19\n"


# ---------------------------------------------------------------- a tiny ONNX model with metadata


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return write_tiny_onnx(str(tmp_path_factory.mktemp("tiny") / "model.onnx"))


@pytest.fixture(scope="module")
def faces():
    rng = np.random.default_rng(5)
    return rng.integers(0, 256, (19, 48, 48)).astype(np.uint8)


@pytest.fixture(params=["8.2.1.8", "10.3.0"])
def fake_runtime(request, monkeypatch):
    """(trt version, fake pycuda.driver, engines deserialized) with both test doubles importable."""
    cuda, engines = install_fakes(monkeypatch, request.param)
    return request.param, cuda, engines


# ---------------------------------------------------------------- TensorRT backend: pure helpers


def test_plan_engine_reads_both_apis_and_sizes_buffers():
    for engine, tensor_api in ((FakeEngine8(None), False), (FakeEngine10(None), True)):
        plan = tb.plan_engine(engine, tensor_api, lambda mode: mode == "IN")
        assert (plan.input.name, plan.output.name) == NAMES
        assert (plan.min_batch, plan.opt_batch, plan.max_batch) == (1, 4, 8)
        assert plan.item_input_shape == (1, 48, 48) and plan.output_shape(3) == (3, 8)
        assert plan.num_bindings == 2 and plan.tensor_api == tensor_api
        assert tb.buffer_nbytes(plan) == (8 * 48 * 48 * 4, 8 * 8 * 4)
        assert tb.buffer_nbytes(plan, 1) == (48 * 48 * 4, 8 * 4)
    assert tb.uses_tensor_api("10.3.0") and not tb.uses_tensor_api("8.2.1.8")


def test_batch_chunks_cover_every_face_within_the_max_batch():
    assert tb.batch_chunks(19, 8) == [(0, 8), (8, 16), (16, 19)]
    assert tb.batch_chunks(8, 8) == [(0, 8)]
    assert tb.batch_chunks(1, 8) == [(0, 1)]
    assert tb.batch_chunks(0, 8) == []
    for n in range(0, 30):
        chunks = tb.batch_chunks(n, 4)
        assert sum(stop - start for start, stop in chunks) == n and all(stop - start <= 4 for start, stop in chunks)
    assert tb.padded_size(1, 2) == 2 and tb.padded_size(3, 1) == 3
    with pytest.raises(ValueError):
        tb.batch_chunks(3, 0)


def test_plan_engine_rejects_engines_that_do_not_fit():
    with pytest.raises(BackendError, match="float32"):
        tb.plan_engine(FakeEngine8(None, dtypes=(np.float16, np.float32)), False)
    with pytest.raises(BackendError, match="profile"):
        tb.plan_engine(FakeEngine8(None, profile=((1, 1, 64, 64), (4, 1, 64, 64), (8, 1, 64, 64))), False)
    two_inputs = FakeEngine8(None)
    two_inputs.binding_is_input = lambda i: True
    with pytest.raises(BackendError, match="one input and at least one output"):
        tb.plan_engine(two_inputs, False)
    plan = tb.plan_engine(FakeEngine8(None), False)
    with pytest.raises(BackendError, match=r"takes \[N, 1, 48, 48\]"):
        tb.check_batch(np.zeros((2, 48, 48, 1), np.float32), plan)
    assert tb.check_batch(np.zeros((2, 1, 48, 48), np.float64), plan).dtype == np.float32


def test_runtime_staleness_names_tensorrt_gpu_capability_and_cuda():
    nano = tb.DeviceInfo("NVIDIA Tegra X1", "5.3", "10.2")
    info = {"engine": je.runtime_key("8.2.1.8", nano)}
    assert je.runtime_staleness(info, je.runtime_key("8.2.1.8", nano)) is None
    reason = je.runtime_staleness(info, je.runtime_key("10.3.0", tb.DeviceInfo("Orin", "8.7", "12.2")))
    assert "built with TensorRT 8.2.1.8, this is TensorRT 10.3.0" in reason and "'Orin'" in reason
    assert "compute capability '5.3', this is '8.7'" in reason and "CUDA driver '10.2', this is '12.2'" in reason
    old = {"engine": {"tensorrt_version": "8.2.1.8", "gpu": "NVIDIA Tegra X1"}}  # a sidecar without the new fields
    assert "does not say which compute capability" in je.runtime_staleness(old, je.runtime_key("8.2.1.8", nano))
    assert (
        je.engine_filename("model", "8.2.1.8", "fp16", "NVIDIA Tegra X1", "5.3")
        == "model.trt8.2.1.8.fp16.nvidia-tegra-x1.sm53.engine"
    )


# ---------------------------------------------------------------- TensorRT backend: fake runtime


def test_backend_runs_chunks_with_pinned_buffers(fake_runtime, tmp_path, faces):
    from edge.backends import load_backend
    from edge.classifier import EmotionClassifier
    from edge.preprocess import prepare_faces

    version, cuda, engines = fake_runtime
    engine_path = write_engine(tmp_path, version)
    backend = load_backend(engine_path, runtime="tensorrt")
    assert type(backend).__name__ == "TensorRTBackend" and backend.plan.tensor_api == version.startswith("10.")
    assert engines[0].batches == [1]  # warm-up at load
    x = prepare_faces(faces, tiny_meta())
    out = backend.infer(x)
    assert engines[0].batches == [1, 8, 8, 3]  # 19 faces, max batch 8
    np.testing.assert_allclose(out, reference_probs(x), atol=1e-6)
    np.testing.assert_allclose(backend.infer(x[:1]), reference_probs(x[:1]), atol=1e-6)
    assert backend.infer(x[:0]).shape == (0, 8)
    clf = EmotionClassifier(backend)
    np.testing.assert_allclose(clf.predict(list(faces[:5])), reference_probs(x[:5]), atol=1e-6)
    assert cuda.depth == 0  # the context is popped after every call
    backend.close()
    assert cuda.memory == {} and cuda.depth == 0
    with pytest.raises(BackendError, match="closed"):
        backend.infer(x[:1])


def test_backend_refuses_engines_of_another_tensorrt_or_gpu(fake_runtime, tmp_path):
    version, cuda, engines = fake_runtime
    other = "8.2.1.8" if version.startswith("10.") else "10.3.0"
    with pytest.raises(BackendError, match="built with TensorRT {}.*--build-engine".format(other)):
        tb.TensorRTBackend(write_engine(tmp_path, other), tiny_meta())
    with pytest.raises(BackendError, match="built with GPU 'NVIDIA Tegra X1'"):
        tb.TensorRTBackend(write_engine(tmp_path, version, gpu="NVIDIA Tegra X1"), tiny_meta())
    with pytest.raises(BackendError, match="cannot deserialize"):
        tb.TensorRTBackend(write_engine(tmp_path, version, data=b"truncated"), tiny_meta())
    with pytest.raises(BackendError, match=r"takes \[N, 1, 48, 48\] but its metadata says NCHW \(1, 64, 64\)"):
        tb.TensorRTBackend(write_engine(tmp_path, version), md.with_layout(md.default_metadata(64, 64), "NCHW"))
    assert cuda.memory == {}
    assert len(engines) == 1 and cuda.depth == 0


def test_tensorrt_backend_matches_onnxruntime(tiny_onnx, faces, tmp_path):
    if not (module_installed("tensorrt") and module_installed("pycuda")):
        pytest.skip(TRT_SKIP)
    from edge.classifier import load_classifier

    engine = je.ensure_engine(tiny_onnx, "fp16", 8, str(tmp_path), log=print)
    assert je.ensure_engine(tiny_onnx, "fp16", 8, str(tmp_path), log=print) == engine  # reused
    trt_clf = load_classifier(engine, runtime="tensorrt")
    ort_clf = load_classifier(tiny_onnx, runtime="onnxruntime")
    np.testing.assert_allclose(trt_clf.predict(faces), ort_clf.predict(faces), atol=1e-2)  # fp16, 19 > max 8
    trt_clf.close()


def test_tensorrt_detector_engine_finds_the_faces_onnxruntime_finds(tmp_path):
    """A real FP16 engine of the shipped BlazeFace ONNX (where TensorRT and a GPU exist)."""
    if not (module_installed("tensorrt") and module_installed("pycuda")):
        pytest.skip(TRT_SKIP)
    from edge import metadata as md
    from edge.backends import load_backend
    from edge.detect.factory import DEFAULT_DETECTOR, make_detector, shipped_detector_path
    from fer_edge.scenes import astronaut_scene
    from jetson.agent import DETECTOR_ENGINE_STEM, DETECTOR_MAX_BATCH

    engine = je.ensure_engine(
        shipped_detector_path(DEFAULT_DETECTOR),
        "fp16",
        DETECTOR_MAX_BATCH,
        str(tmp_path),
        log=print,
        stem=DETECTOR_ENGINE_STEM,
    )
    backend = load_backend(engine, runtime="tensorrt", kind=md.FACE_DETECTOR)
    image = astronaut_scene().image
    on_gpu = make_detector(backend=backend, tiles="4x2").detect(image)
    on_cpu = make_detector(tiles="4x2").detect(image)
    assert len(on_gpu) == len(on_cpu) == 1
    assert max(abs(a - b) for a, b in zip(on_gpu[0].box, on_cpu[0].box)) <= 2
    backend.close()


def test_ensure_engine_errors_are_clear(tiny_onnx, tmp_path):
    with pytest.raises(BackendError, match="ONNX model not found"):
        je.ensure_engine(str(tmp_path / "missing.onnx"), engine_dir=str(tmp_path))
    if module_installed("tensorrt"):
        return
    with pytest.raises(BackendError, match="TensorRT/pycuda not installed.*Jetson"):
        je.ensure_engine(tiny_onnx, engine_dir=str(tmp_path / "engines"), log=None)


def test_default_engine_dir(monkeypatch, tmp_path):
    monkeypatch.setenv(je.ENGINE_DIR_ENV, str(tmp_path / "e"))
    assert je.default_engine_dir("/x/model.onnx") == str(tmp_path / "e")
    monkeypatch.delenv(je.ENGINE_DIR_ENV)
    monkeypatch.setattr(je, "STATE_DIR", str(tmp_path / "no-such-dir"))
    assert je.default_engine_dir("/x/model.onnx") == "/x"


# ---------------------------------------------------------------- the agent


def test_choose_runtime():
    assert choose_runtime("m.onnx", "", True) == "build"
    assert choose_runtime("m.onnx", "tensorrt", True) == "build"
    assert choose_runtime("m.onnx", "", False) == "fallback"
    assert choose_runtime("m.onnx", "onnxruntime", True) == "fallback"
    assert choose_runtime("m.engine", "", False) == "engine"
    assert choose_runtime("m.xml", "", True) == "fallback"
    with pytest.raises(BackendError, match="TensorRT/pycuda not installed"):
        choose_runtime("m.onnx", "tensorrt", False)
    with pytest.raises(BackendError, match="cannot run on runtime 'onnxruntime'"):
        choose_runtime("m.engine", "onnxruntime", True)


def test_make_classifier_falls_back_to_onnxruntime(tiny_onnx, faces, monkeypatch, caplog):
    from edge.preprocess import prepare_faces

    caplog.set_level(logging.INFO, logger="jetson")  # whatever level an earlier test left the root logger at

    config = load_config(None, env={}, overrides={"model": tiny_onnx})
    clf = make_classifier(config, tensorrt_ok=False)
    assert clf.runtime == "onnxruntime" and "TensorRT/pycuda not installed" in caplog.text
    np.testing.assert_allclose(clf.predict(faces), reference_probs(prepare_faces(faces, tiny_meta())), atol=1e-5)

    def no_engine(*args, **kwargs):
        raise BackendError("engine build failed: parser error")

    monkeypatch.setattr(je, "ensure_engine", no_engine)
    assert make_classifier(config, tensorrt_ok=True).runtime == "onnxruntime"
    assert "engine build failed" in caplog.text and "falling back to ONNX Runtime" in caplog.text
    with pytest.raises(BackendError, match="parser error"):
        make_classifier(dict(config, runtime="tensorrt"), tensorrt_ok=True)


def run_jetson(args, cwd=REPO, env=None, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "jetson"] + args, cwd=str(cwd), capture_output=True, text=True, timeout=timeout, env=env
    )


def test_cli_bad_config_exits_78_and_build_engine_without_tensorrt_is_clear(tiny_onnx, tmp_path):
    bad = tmp_path / "agent.json"
    bad.write_text(json.dumps({"sourse": "csi://0"}))
    proc = run_jetson(["--config", str(bad)])
    assert proc.returncode == 78 and "unknown key(s) sourse" in proc.stderr
    if module_installed("tensorrt") and module_installed("pycuda"):
        return
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"model": tiny_onnx}))
    proc = run_jetson(["--config", str(good), "--build-engine"])
    assert proc.returncode == 2 and "TensorRT/pycuda not installed" in proc.stderr, proc.stderr


def test_check_camera_reports_resolution_and_hints(tmp_path):
    from edge.agent.sources import SourceError
    from jetson.camera import camera_hints, check_camera, format_report, gstreamer_hint

    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.full((72, 128, 3), 90, np.uint8))
    report = check_camera(str(image))
    assert (report.width, report.height, report.channels) == (128, 72, 3)
    assert "128x72" in format_report(report)
    hint = gstreamer_hint("/home/u/.local/lib/python3.6/site-packages/cv2/__init__.py", gstreamer=False)
    assert "pip3 uninstall opencv-python" in hint and "/usr/lib/python3/dist-packages" in hint
    assert gstreamer_hint(gstreamer=True) is None
    hints = camera_hints("csi://0", [], "/x/site-packages/cv2.so", gstreamer=False)
    assert any("nvargus-daemon" in h for h in hints) and any("pip3 uninstall" in h for h in hints)
    assert "none" in camera_hints("v4l2:///dev/video0", [])[0]
    with pytest.raises(SourceError, match="no such file"):
        check_camera(str(tmp_path / "missing.mp4"))


# ---------------------------------------------------------------- the bundle


@pytest.fixture(scope="module")
def bundle(tiny_onnx, tmp_path_factory):
    return build_bundle(str(tmp_path_factory.mktemp("dist")), model_onnx=tiny_onnx, version=VERSION)


@pytest.fixture(scope="module")
def unpacked(bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(bundle) as tar:
        tar.extractall(str(root))
    return root / TOP


def test_bundle_contents_and_modes(bundle, tiny_onnx):
    assert os.path.basename(bundle) == TOP + ".tar.gz"
    assert [n for n in os.listdir(os.path.dirname(bundle)) if n.endswith(".tmp")] == []
    with tarfile.open(bundle) as tar:
        members = dict((m.name[len(TOP) + 1 :], m) for m in tar.getmembers() if m.name != TOP)
        model = tar.extractfile(TOP + "/model/model.onnx").read()
        assert all(m.name == TOP or m.name.startswith(TOP + "/") for m in tar.getmembers())
    names = set(n for n, m in members.items() if m.isfile())
    for required in (
        "install.sh",
        "uninstall.sh",
        "README.txt",
        "VERSION",
        "MANIFEST.sha256",
        "edge/__init__.py",
        "edge/agent/service.py",
        "edge/backends/base.py",
        "edge/events/schema/emotion-event.schema.json",
        "jetson/__init__.py",
        "jetson/__main__.py",
        "jetson/agent.py",
        "jetson/trt_backend.py",
        "jetson/engine.py",
        "jetson/engine_build.py",
        "jetson/engine_check.py",
        "jetson/engine_plan.py",
        "jetson/camera.py",
        "model/model.onnx",
        "model/model.check.npz",
        "model/detector.onnx",
        "model/detector.check.npz",
        "config/agent.json",
        "config/agent.ini.example",
        "systemd/fer-edge.service",
    ):
        assert required in names, required
    assert not any(n.startswith("convert/") for n in names)  # engine code lives in jetson/, nothing synthesized
    assert not any(
        "__pycache__" in n
        or n.endswith(".pyc")
        or n.startswith(("fer_edge/bundles/jetson_templates", "train/", "fer_edge/", "tests/"))
        for n in names
    )
    assert "fer_edge/bundles/jetson.py" not in names and "fer_edge/bundles/jetson_check_set.py" not in names
    for name, member in members.items():
        want = 0o755 if member.isdir() or name in ("install.sh", "uninstall.sh") else 0o644
        assert member.mode == want, (name, oct(member.mode))
    with open(tiny_onnx, "rb") as handle:
        assert model == handle.read()


def test_bundle_manifest_readme_and_model_metadata(unpacked):
    from edge.onnx_meta import onnx_model_metadata

    lines = (unpacked / "MANIFEST.sha256").read_text().splitlines()
    files = sorted(str(p.relative_to(unpacked)) for p in unpacked.rglob("*") if p.is_file())
    assert sorted(line.split("  ", 1)[1] for line in lines) == sorted(f for f in files if f != "MANIFEST.sha256")
    for line in lines:
        digest, name = line.split("  ", 1)
        assert hashlib.sha256((unpacked / name).read_bytes()).hexdigest() == digest, name
    assert (unpacked / "VERSION").read_text() == VERSION + "\n"
    assert "fer-edge-jetson-{}.tar.gz".format(VERSION) in (unpacked / "README.txt").read_text()
    assert onnx_model_metadata(str(unpacked / "model" / "model.onnx"))["model"]["name"] == "tiny-jetson-test"


def parse_unit(text):
    sections, current = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_bundle_systemd_unit(unpacked):
    unit = parse_unit((unpacked / "systemd" / "fer-edge.service").read_text())
    service = unit["Service"]
    expected = {
        "Restart": "on-failure",
        "RestartSec": "5",
        "User": "fer-edge",
        "Group": "fer-edge",
        "SupplementaryGroups": "video",
        "WorkingDirectory": "/var/lib/fer-edge",
        "StateDirectory": "fer-edge",
        "ExecStart": "/opt/fer-edge/venv/bin/python3 -m jetson --config /etc/fer-edge/agent.json",
        "RestartPreventExitStatus": "78",
    }
    for key, value in expected.items():
        assert service[key] == [value], key
    assert "PYTHONPATH=/opt/fer-edge" in service["Environment"]
    assert "FER_EDGE_ENGINE_DIR=/var/lib/fer-edge/engines" in service["Environment"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in unit["Unit"]["After"][0]


def test_bundle_config_templates_load(unpacked):
    json_config = load_config(str(unpacked / "config" / "agent.json"), env={})
    ini_config = load_config(str(unpacked / "config" / "agent.ini.example"), env={})
    assert set(json.loads((unpacked / "config" / "agent.json").read_text())) == set(BY_NAME)
    assert json_config == ini_config
    assert json_config["source"].startswith("csi://0") and json_config["model"] == "/opt/fer-edge/model/model.onnx"
    ini = (unpacked / "config" / "agent.ini.example").read_text()
    for option in BY_NAME.values():
        assert "# " + option.help in ini


def _catches_import_error(handler):
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(getattr(n, "id", "") in ("ImportError", "ModuleNotFoundError", "Exception") for n in names)


def _imports(tree):
    """(module, level, in_function, guarded, outermost function) of every import in a module AST;
    guarded: inside a try whose handler catches ImportError."""
    out = []

    def walk(node, function, guarded):
        if isinstance(node, ast.Import):
            out.extend((alias.name, 0, function is not None, guarded, function) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.append((node.module or "", node.level, function is not None, guarded, function))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = function or node.name
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            for stmt in node.body:
                walk(stmt, function, True)
            for stmt in node.handlers + node.orelse + node.finalbody:
                walk(stmt, function, guarded)
            return
        for child in ast.iter_child_nodes(node):
            walk(child, function, guarded)

    walk(tree, None, False)
    return out


def test_bundle_has_no_host_only_imports(unpacked):
    stdlib = set(sys.stdlib_module_names)
    bundled = set(str(p.relative_to(unpacked).with_suffix("")).replace(os.sep, ".") for p in unpacked.rglob("*.py"))
    bundled |= set(m[: -len(".__init__")] for m in bundled if m.endswith(".__init__"))
    problems = []
    for path in sorted(unpacked.rglob("*.py")):
        rel = str(path.relative_to(unpacked))
        package = rel.rsplit("/", 1)[0].replace("/", ".") if "/" in rel else ""
        for module, level, in_function, guarded, function in _imports(ast.parse(path.read_text(), rel)):
            if level:  # relative: resolve against the file's package
                base = package.split(".")[: len(package.split(".")) - level + 1]
                module = ".".join(base + ([module] if module else []))
            top = module.split(".")[0]
            where = "{}: import {}{}".format(rel, module, " in {}()".format(function) if function else "")
            if top in HOST_ONLY_MODULES and not guarded:
                problems.append(where + " (host-only module)")
            elif top in ("edge", "jetson") and module not in bundled:
                problems.append(where + " (not in the bundle)")
            elif not in_function and top not in stdlib | DEVICE_MODULES:
                problems.append(where + " (imported at module level; the device has only stdlib, numpy, cv2)")
            elif in_function and not guarded and top not in stdlib | DEVICE_MODULES | LAZY_RUNTIME_MODULES:
                problems.append(where + " (unknown dependency)")
    assert problems == []


def test_bundle_is_python36_syntax(unpacked):
    vermin = os.path.join(os.path.dirname(sys.executable), "vermin")
    if not os.path.isfile(vermin):
        pytest.skip("vermin not installed (pip install '.[dev]')")
    files = [str(p) for p in sorted(unpacked.rglob("*.py"))]
    assert len(files) > 20
    proc = subprocess.run(
        [vermin, "--no-tips", "--violations", "-t=3.6-", "--backport", "dataclasses", "--backport", "typing"] + files,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bundled_agent_runs_without_host_packages(unpacked, tmp_path):
    """The unpacked bundle alone (host-only modules blocked) runs the agent on two images with the
    ONNX Runtime fallback, and the engine builder's CLI loads."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        cv2.imwrite(str(frames / "{}.png".format(i)), np.full((120, 160, 3), 60 + 40 * i, np.uint8))
    runner = (
        "import sys, runpy\n"
        "for m in {blocked!r}: sys.modules[m] = None\n"
        "sys.path.insert(0, {root!r})\n"
        "sys.argv = ['jetson'] + sys.argv[1:]\n"
        "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)\n"
    ).format(blocked=sorted(HOST_ONLY_MODULES), root=str(unpacked))
    env = dict(os.environ, PYTHONPATH=str(unpacked), FER_EDGE_ENGINE_DIR=str(tmp_path / "engines"))
    config = tmp_path / "agent.json"
    config.write_text(
        json.dumps(
            {"source": str(frames), "model": str(unpacked / "model" / "model.onnx"), "broker": "", "stats_interval": 0}
        )
    )
    proc = subprocess.run(
        [sys.executable, "-c", runner, "jetson", "--config", str(config)],
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert '"frames": 2' in out and "ONNX Runtime" in out
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            runner.split("sys.argv =")[0]
            + "import edge.agent.service, jetson.agent, jetson.trt_backend, jetson.camera, jetson.engine, "
            "jetson.engine_build, jetson.engine_check\n"
            "print('\\n'.join(m.__file__ for n, m in sorted(sys.modules.items()) if m and "
            "n.split('.')[0] in ('edge', 'jetson')))",
        ],
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    loaded = where.stdout.split()
    assert where.returncode == 0 and len(loaded) > 10, where.stderr
    assert all(path.startswith(str(unpacked)) for path in loaded), loaded
    proc = subprocess.run(
        [sys.executable, "-c", runner, "jetson.engine", "--help"],
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0 and "--max-batch" in proc.stdout, proc.stderr


def test_bundle_refuses_a_model_without_metadata(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07\x3a\x00")  # a ModelProto with ir_version and an empty graph
    with pytest.raises(BundleError, match="no fer-edge metadata"):
        build_bundle(str(tmp_path / "dist"), model_onnx=str(bad), version=VERSION)
    with pytest.raises(BundleError, match="not found"):
        build_bundle(str(tmp_path / "dist"), model_onnx=str(tmp_path / "missing.onnx"), version=VERSION)
    assert not (tmp_path / "dist").exists() or os.listdir(str(tmp_path / "dist")) == []


# ---------------------------------------------------------------- install.sh / uninstall.sh


def test_scripts_parse_with_bash(unpacked):
    for script in ("install.sh", "uninstall.sh"):
        proc = subprocess.run(["bash", "-n", str(unpacked / script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert os.access(str(unpacked / script), os.X_OK)
        assert "set -euo pipefail" in (unpacked / script).read_text()


def fake_root(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "nv_tegra_release").write_text(RELEASE_R32_7_1)
    return root


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def run_install(unpacked, env, *args):
    return subprocess.run(
        ["bash", str(unpacked / "install.sh"), "--dry-run"] + list(args),
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=str(unpacked),
    )


def test_install_dry_run_reports_missing_tensorrt(unpacked, tmp_path):
    if module_installed("tensorrt"):
        pytest.skip("TensorRT is installed here; the missing-TensorRT message cannot be shown")
    root = fake_root(tmp_path)
    env = dict(os.environ, FER_EDGE_ROOT=str(root), FER_EDGE_PYTHON=sys.executable, FER_EDGE_ARCH="aarch64")
    env.pop("PYTHONPATH", None)
    proc = run_install(unpacked, env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "L4T R32.7.1 (JetPack 4.6.1)" in proc.stdout
    assert "TensorRT for Python not found" in proc.stderr and "python3-libnvinfer" in proc.stderr
    assert "cannot install fer-edge here" in proc.stderr
    assert "[dry-run]" not in proc.stdout  # nothing planned when a check fails
    assert tree(root) == ["etc", "etc/nv_tegra_release"]
    # a non-Jetson: both the architecture and the missing L4T release are named
    (root / "etc" / "nv_tegra_release").unlink()
    proc = run_install(unpacked, dict(env, FER_EDGE_ARCH="x86_64"))
    assert proc.returncode == 1 and "x86_64, not aarch64" in proc.stderr and "nv_tegra_release not found" in proc.stderr


def test_install_dry_run_on_a_ready_jetson_prints_the_plan(unpacked, tmp_path):
    fakes = tmp_path / "fake_modules"
    for name, text in (
        ("tensorrt", "__version__ = '8.2.1.8'\n"),
        ("pycuda", "VERSION_TEXT = '2021.1'\n"),
        (
            "cv2",
            "__version__ = '4.1.1'\ndef getBuildInformation():\n"
            "    return '  Video I/O:\\n    GStreamer:                   YES (1.14.5)\\n'\n",
        ),
    ):
        (fakes / name).mkdir(parents=True)
        (fakes / name / "__init__.py").write_text(text)
    root = fake_root(tmp_path)
    env = dict(
        os.environ,
        FER_EDGE_ROOT=str(root),
        FER_EDGE_PYTHON=sys.executable,
        FER_EDGE_ARCH="aarch64",
        PYTHONPATH=str(fakes),
    )
    proc = run_install(unpacked, env)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    for expected in (
        "ok: TensorRT 8.2.1.8",
        "ok: OpenCV 4.1.1 with GStreamer",
        "ok: pycuda 2021.1",
        "ok: bundle files match MANIFEST.sha256",
        "would be installed (dry run)",
        "systemctl enable fer-edge.service",
        "--check-gpu",
        "--build-engine",
        "journalctl -u fer-edge -f",
        "mosquitto_sub -h BROKER -t 'fer-edge/+/events' -v",
        "No MQTT broker is set yet",
    ):
        assert expected in out, expected
    assert "{}/opt/fer-edge".format(root) in out and "{}/etc/fer-edge/agent.json".format(root) in out
    # the config is readable by root and the service's group only; the state folder by the service alone
    assert "install -m 0640 -o root -g fer-edge" in out and "install -d -m 0700 -o fer-edge" in out
    assert tree(root) == ["etc", "etc/nv_tegra_release"]  # a dry run changes nothing
    proc = subprocess.run(
        ["bash", str(unpacked / "uninstall.sh"), "--dry-run"],
        capture_output=True,
        text=True,
        env=dict(os.environ, FER_EDGE_ROOT=str(root)),
        timeout=60,
    )
    assert proc.returncode == 0 and "rm -rf {}/opt/fer-edge".format(root) in proc.stdout, proc.stderr
    assert tree(root) == ["etc", "etc/nv_tegra_release"]


PY36 = os.path.expanduser("~/.pyenv/versions/3.6.15/bin/python3.6")


@pytest.mark.parametrize("python", [sys.executable, PY36], ids=["current-python", "python3.6"])
def test_install_pins_what_it_pip_installs_into_the_venv(unpacked, tmp_path, python):
    """Without pycuda and paho-mqtt the plan makes a venv that sees JetPack's packages, upgrades its pip
    (manylinux2014 wheels: onnxruntime) and pip-installs exact versions for that Python."""
    if not os.path.isfile(python):
        pytest.skip("{} not here (pyenv's Python 3.6.15)".format(python))
    fakes = tmp_path / "fake_modules"
    for name, text in (
        ("tensorrt", "__version__ = '8.2.1.8'\n"),
        ("paho", "raise ImportError('no paho')\n"),
        ("pycuda", "raise ImportError('no pycuda')\n"),
        ("numpy", "__version__ = '1.19.5'\n"),
        (
            "cv2",
            "__version__ = '4.1.1'\ndef getBuildInformation():\n"
            "    return '  Video I/O:\\n    GStreamer:                   YES (1.14.5)\\n'\n",
        ),
    ):
        (fakes / name).mkdir(parents=True)
        (fakes / name / "__init__.py").write_text(text)
    root = fake_root(tmp_path)
    (root / "usr" / "local" / "cuda" / "bin").mkdir(parents=True)
    (root / "usr" / "local" / "cuda" / "bin" / "nvcc").write_text("#!/bin/sh\n")
    (root / "usr" / "local" / "cuda" / "bin" / "nvcc").chmod(0o755)
    env = dict(
        os.environ, FER_EDGE_ROOT=str(root), FER_EDGE_PYTHON=python, FER_EDGE_ARCH="aarch64", PYTHONPATH=str(fakes)
    )
    proc = run_install(unpacked, env)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    venv = "{}/opt/fer-edge/venv".format(root)
    assert "-m venv --system-site-packages {}".format(venv) in out
    pip_lines = [line for line in out.splitlines() if "pip install" in line and "[dry-run]" in line]
    assert pip_lines and all(venv + "/bin/python3 -m pip install" in line for line in pip_lines), out
    import re

    pins = dict(
        m.groups()
        for line in pip_lines
        for m in re.finditer(r"(?:^|\s)(pycuda|paho-mqtt|onnxruntime|pip)(==\S+)", line)
    )
    old = python == PY36
    assert pins == {
        "pip": "==21.3.1" if old else "==24.0",
        "pycuda": "==2021.1" if old else "==2024.1.2",
        "paho-mqtt": "==1.6.1" if old else "==2.1.0",
        "onnxruntime": "==1.10.0" if old else "==1.16.3",
    }, pip_lines
    assert "--check-gpu" in out and "/opt/fer-edge/venv/bin/python3 -m jetson" in out
    without = run_install(unpacked, env, "--no-onnxruntime").stdout
    assert "onnxruntime==" not in without and "no CPU fallback" in without


def test_service_unit_is_sandboxed(unpacked, tmp_path):
    """`systemd-analyze security` rates the shipped unit <= 3.0 while cameras and the GPU stay reachable."""
    import re
    import shutil

    unit = (unpacked / "systemd" / "fer-edge.service").read_text()
    for setting in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "UMask=0077",
        "CapabilityBoundingSet=\n",
        "DevicePolicy=closed",
        "DeviceAllow=char-video4linux rw",
        "DeviceAllow=/dev/nvmap rw",
        "DeviceAllow=/dev/nvhost-gpu rw",
        "SystemCallFilter=@system-service",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "StateDirectoryMode=0700",
    ):
        assert setting in unit, setting
    settings = [line.split("=")[0] for line in unit.splitlines() if line and not line.startswith("#")]
    assert "PrivateDevices" not in settings and "PrivateTmp" not in settings  # camera, GPU, /tmp/argus_socket
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed: the exposure score is not measured here")
    copy = tmp_path / "fer-edge.service"
    copy.write_text(unit)
    proc = subprocess.run(
        [analyze, "security", "--offline=true", str(copy)], capture_output=True, text=True, timeout=60
    )
    match = re.search(r"Overall exposure level for fer-edge.service: ([0-9.]+)", proc.stdout + proc.stderr)
    if match is None:
        pytest.skip("this systemd-analyze cannot rate a unit file offline: {}".format((proc.stderr or "")[-300:]))
    assert float(match.group(1)) <= 3.0, proc.stdout[-3000:]


def test_install_refuses_test_hooks_outside_dry_run(unpacked):
    proc = subprocess.run(
        ["bash", str(unpacked / "install.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, FER_EDGE_ROOT="/tmp/nowhere"),
    )
    assert proc.returncode == 2 and "test hooks for --dry-run only" in proc.stderr


# ---------------------------------------------------------------- the face detector on the Jetson


def test_detector_engine_runs_blazeface_through_the_tensorrt_backend(fake_runtime, tmp_path):
    """The TensorRT backend with a two-output NHWC engine (outputs in another order than the
    model's) gives the neural detector the same faces as ONNX Runtime."""
    from edge.detect.factory import DEFAULT_DETECTOR, make_detector, shipped_detector_path
    from edge.onnx_meta import onnx_model_metadata
    from fer_edge.scenes import astronaut_scene

    version, cuda, engines = fake_runtime
    onnx_path = shipped_detector_path(DEFAULT_DETECTOR)
    meta = onnx_model_metadata(onnx_path)
    engine_path = str(tmp_path / "detector.trt{}.fp16.fake-gpu.engine".format(version))
    with open(engine_path, "wb") as handle:
        handle.write("fake detector {} {}".format(onnx_path, meta["input"]["height"]).encode())
    info = dict(
        meta,
        engine={
            "tensorrt_version": version,
            "gpu": "Fake GPU",
            "precision": "fp16",
            "max_batch": 9,
            "onnx": "detector.onnx",
            "compute_capability": "5.3",
            "cuda_driver": "10.2",
        },
    )
    md.write(info, md.sidecar_path(engine_path))
    backend = load_backend_kind(engine_path, md.FACE_DETECTOR)
    assert [s.name for s in backend.plan.outputs] == ["regressors", "classificators"]
    image = astronaut_scene().image
    on_gpu = make_detector(backend=backend, tiles="2x2").detect(image)
    on_cpu = make_detector(tiles="2x2").detect(image)
    assert engines[0].batches[-1] == 5  # the whole frame and 4 tiles in one engine call
    assert len(on_gpu) == len(on_cpu) == 1
    assert on_gpu[0].box == on_cpu[0].box and abs(on_gpu[0].score - on_cpu[0].score) < 1e-4
    backend.close()
    assert cuda.memory == {} and cuda.depth == 0
    with pytest.raises(BackendError, match="not an emotion classifier"):
        load_backend_kind(engine_path, md.CLASSIFIER)


def load_backend_kind(path, kind):
    from edge.backends import load_backend

    return load_backend(path, runtime="tensorrt", kind=kind)


def test_face_detector_choice_on_the_jetson(monkeypatch, caplog):
    from jetson.agent import make_face_detector

    caplog.set_level(logging.INFO, logger="jetson")

    config = load_config(None, env={}, overrides={"broker": ""})
    detector = make_face_detector(config, tensorrt_ok=False)
    assert type(detector).__name__ == "NeuralFaceDetector" and detector.runtime == "onnxruntime"
    assert "running the face detector" in caplog.text and "ONNX Runtime" in caplog.text
    haar = make_face_detector(load_config(None, env={}, overrides={"detector": "haar"}), tensorrt_ok=True)
    assert type(haar).__name__ == "HaarDetector"
    calls = []
    monkeypatch.setattr(
        je, "ensure_engine", lambda *a, **k: calls.append((a, k)) or (_ for _ in ()).throw(BackendError("no GPU here"))
    )
    fallback = make_face_detector(config, tensorrt_ok=True)  # the engine build fails: ONNX Runtime, logged
    assert fallback.runtime == "onnxruntime" and calls[0][1]["stem"] == "detector" and calls[0][0][2] == 9
    assert "TensorRT detector engine unavailable (no GPU here)" in caplog.text
    with pytest.raises(BackendError, match="no GPU here"):
        make_face_detector(dict(config, runtime="tensorrt"), tensorrt_ok=True)


def test_bundle_ships_the_face_detector(unpacked):
    from edge.onnx_meta import onnx_model_metadata

    meta = onnx_model_metadata(str(unpacked / "model" / "detector.onnx"))
    assert meta["kind"] == md.FACE_DETECTOR and meta["model"]["name"] == "blazeface-back-256"
    template = json.loads((unpacked / "config" / "agent.json").read_text())
    assert template["detector"] == "blazeface-back"
    assert template["detector_model"] == "/opt/fer-edge/model/detector.onnx"


def test_check_camera_checks_every_configured_camera(tmp_path):
    """`python3 -m jetson --check-camera` with a `cameras` config: each camera reported by device id;
    one that gives no frame is named and the exit status is 2."""
    good = tmp_path / "door.png"
    cv2.imwrite(str(good), np.full((60, 80, 3), 90, np.uint8))
    config = tmp_path / "cams.json"
    config.write_text(
        json.dumps(
            {
                "broker": "",
                "cameras": [
                    {"source": str(good), "device_id": "door"},
                    {"source": str(tmp_path / "missing.mp4"), "device_id": "hall"},
                ],
            }
        )
    )
    proc = run_jetson(["--config", str(config), "--check-camera"])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "door: camera OK: {} gives 80x60 frames".format(good) in proc.stdout
    assert "hall: " in proc.stderr and "no such file" in proc.stderr
    config.write_text(json.dumps({"broker": "", "cameras": [{"source": str(good), "device_id": "door"}]}))
    proc = run_jetson(["--config", str(config), "--check-camera"])
    assert proc.returncode == 0 and proc.stdout.count("camera OK") == 1, proc.stderr
