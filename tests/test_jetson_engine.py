"""jetson.engine: build-or-reuse, the on-device check through TensorRTBackend, back-off after failures,
CUDA errors as the project's errors.

NVIDIA's builder, TensorRT's runtime and pycuda are test doubles (tests/trt_doubles.py: they exist
only where a GPU does); everything else is the real code: the engine naming and staleness rule, the
check sets the bundle really ships (computed with ONNX Runtime on the real models), the backend, the
agent's fallback and CLI. The fake engines compute with the tiny model or with ONNX Runtime on the
real detector ONNX, so a passing check is a real numerical comparison.
"""

import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from edge import metadata as md
from edge.backends.base import BackendError
from edge.config.agent import load_config
from fer_testdata import REPO
from jetson import engine as je
from jetson import engine_check
from jetson.trt_backend import TensorRTBackend
from trt_doubles import FakeBuilder, install_fakes, reference_probs, tiny_meta, write_tiny_onnx


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return write_tiny_onnx(str(tmp_path_factory.mktemp("tiny") / "model.onnx"))


@pytest.fixture(params=["8.2.1.8", "10.3.0"])
def trt_version(request, monkeypatch):
    install_fakes(monkeypatch, request.param)
    return request.param


def tiny_check_set(onnx_path, shift=0.0, n=12):
    """What fer_edge.bundles.jetson_check_set writes for a classifier: faces and ONNX Runtime's probabilities (+ ``shift``)."""
    import onnxruntime as ort

    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (n, 1, 48, 48)).astype(np.float32)
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    probs = session.run(None, {"face": x})[0] + np.float32(shift)
    return engine_check.CheckSet(x, [probs], md.CLASSIFIER, je.sha256_file(onnx_path), "test: ONNX Runtime", "tiny")


class Clock(object):
    def __init__(self, t=1.0e9):
        self.t = t

    def __call__(self):
        return self.t


def test_build_checks_the_engine_through_the_backend_then_reuses_it(trt_version, tiny_onnx, tmp_path):
    builder = FakeBuilder()
    engines = str(tmp_path / "engines")
    path = je.ensure_engine(tiny_onnx, engine_dir=engines, check=tiny_check_set(tiny_onnx), builder=builder, log=None)
    assert os.path.basename(path) == "model.trt{}.fp16.fake-gpu.sm53.engine".format(trt_version)
    info = je.read_engine_info(path)
    assert info["engine"]["check"]["items"] == 12 and info["engine"]["check"]["max_diff"] < 1e-6
    assert info["engine"]["compute_capability"] == "5.3" and info["engine"]["cuda_driver"] == "10.2"
    assert (
        je.ensure_engine(tiny_onnx, engine_dir=engines, check=tiny_check_set(tiny_onnx), builder=builder, log=None)
        == path
    )
    assert builder.builds == 1  # current: reused, not rebuilt
    # the engine runs in the agent's backend and computes the tiny model
    backend = TensorRTBackend(path, tiny_meta())
    x = np.random.default_rng(1).integers(0, 256, (3, 1, 48, 48)).astype(np.float32)
    np.testing.assert_allclose(backend.infer(x), reference_probs(x), atol=1e-6)
    backend.close()


def test_an_engine_outside_tolerance_is_refused_and_backs_off(trt_version, tiny_onnx, tmp_path):
    builder, clock, engines = FakeBuilder(), Clock(), str(tmp_path / "engines")
    wrong = tiny_check_set(tiny_onnx, shift=0.02)  # references 0.02 away: an engine that computes something else
    with pytest.raises(BackendError, match=r"refused: .*max \|diff\| of probabilities 2\.00e-02 \(allowed 1e-02\)"):
        je.ensure_engine(tiny_onnx, engine_dir=engines, check=wrong, builder=builder, log=None, clock=clock)
    assert [n for n in os.listdir(engines) if n.endswith(".engine")] == []  # deleted, never loaded later
    marker = [n for n in os.listdir(engines) if n.endswith(je.FAILED_SUFFIX)]
    assert len(marker) == 1
    # the service restarts 5 s later: no rebuild, the reason at once
    clock.t += 5
    with pytest.raises(
        BackendError, match="the last build of .* failed .*1 attempt.*next automatic attempt is in 4 min"
    ):
        je.ensure_engine(tiny_onnx, engine_dir=engines, check=wrong, builder=builder, log=None, clock=clock)
    assert builder.builds == 1
    # after the back-off it tries again; a second failure doubles the wait
    clock.t += je.BACKOFF_FIRST_S
    with pytest.raises(BackendError, match="refused"):
        je.ensure_engine(tiny_onnx, engine_dir=engines, check=wrong, builder=builder, log=None, clock=clock)
    assert builder.builds == 2
    clock.t += je.BACKOFF_FIRST_S + 1
    with pytest.raises(BackendError, match="2 attempt"):
        je.ensure_engine(tiny_onnx, engine_dir=engines, check=wrong, builder=builder, log=None, clock=clock)
    # a person asking (`python3 -m jetson --build-engine`) retries now; success clears the marker
    path = je.ensure_engine(
        tiny_onnx,
        engine_dir=engines,
        check=tiny_check_set(tiny_onnx),
        builder=builder,
        log=None,
        clock=clock,
        retry_failed=True,
    )
    assert builder.builds == 3 and os.path.isfile(path)
    assert [n for n in os.listdir(engines) if n.endswith(je.FAILED_SUFFIX)] == []


def test_a_failed_build_backs_off_too(trt_version, tiny_onnx, tmp_path):
    builder = FakeBuilder(fail=BackendError("TensorRT 8.2's ONNX parser failed: Unsupported op"))
    clock, engines = Clock(), str(tmp_path / "engines")
    with pytest.raises(BackendError, match="cannot build a TensorRT engine .*Unsupported op"):
        je.ensure_engine(tiny_onnx, engine_dir=engines, builder=builder, log=None, clock=clock, check=None)
    with pytest.raises(BackendError, match="Unsupported op.*next automatic attempt"):
        je.ensure_engine(tiny_onnx, engine_dir=engines, builder=builder, log=None, clock=clock, check=None)
    assert builder.builds == 1
    assert je.backoff_seconds(1) == 300 and je.backoff_seconds(2) == 600 and je.backoff_seconds(20) == 6 * 3600


def test_another_gpu_or_cuda_makes_the_engine_stale(trt_version, tiny_onnx, tmp_path, monkeypatch):
    builder, engines = FakeBuilder(), str(tmp_path / "engines")
    first = je.ensure_engine(tiny_onnx, engine_dir=engines, builder=builder, log=None, check=None)
    import pycuda.driver as cuda

    monkeypatch.setattr(type(cuda), "DRIVER", 10010)  # the same GPU with another CUDA driver
    lines = []
    second = je.ensure_engine(tiny_onnx, engine_dir=engines, builder=builder, log=lines.append, check=None)
    assert builder.builds == 2 and second == first  # same name (same GPU and capability), rebuilt
    assert any("CUDA driver '10.2', this is '10.1'" in line for line in lines), lines
    assert any("not verified numerically" in line for line in lines)


def test_the_shipped_check_sets_pass_on_the_real_models_and_catch_a_wrong_one(tmp_path):
    """The check sets the bundle ships, compared through the same code with ONNX Runtime standing in
    for the engine: the right model passes at FP16 tolerance, the other detector does not."""
    from edge.backends import load_backend
    from edge.classifier import SHIPPED_MODEL
    from edge.detect.factory import shipped_detector_path
    from edge.onnx_meta import onnx_model_metadata
    from fer_edge.bundles import jetson_check_set as check_set

    detector = shipped_detector_path("blazeface-back")
    det_set = engine_check.load_check_set(check_set.detector_check_set(detector, str(tmp_path / "d.check.npz")))
    clf_set = engine_check.load_check_set(
        check_set.classifier_check_set(SHIPPED_MODEL, detector, str(tmp_path / "m.check.npz"))
    )
    assert det_set.kind == md.FACE_DETECTOR and det_set.inputs.dtype == np.uint8 and len(det_set.inputs) == 6
    assert clf_set.kind == md.CLASSIFIER and len(clf_set.inputs) >= 8 and "ONNX Runtime" in clf_set.source
    for onnx_path, checks, kind in ((detector, det_set, md.FACE_DETECTOR), (SHIPPED_MODEL, clf_set, md.CLASSIFIER)):
        meta = onnx_model_metadata(onnx_path)
        backend = load_backend(onnx_path, runtime="onnxruntime", kind=kind)
        report = engine_check.verify_engine(onnx_path, meta, checks, "fp16", backend=backend)
        assert report.max_diff < 1e-4, report
        backend.close()
    assert (
        "faces in 6/6 frames"
        in engine_check.verify_engine(
            detector,
            onnx_model_metadata(detector),
            det_set,
            "fp16",
            backend=load_backend(detector, runtime="onnxruntime", kind=md.FACE_DETECTOR),
        ).detail
    )
    # a detector engine whose boxes are off by 4 px (1.6 % of 256) is refused at FP16
    meta = onnx_model_metadata(detector)
    boxes, scores = det_set.outputs
    shifted = engine_check.CheckSet(det_set.inputs, [boxes + 4.0, scores], det_set.kind, "", "shifted", "test")
    backend = load_backend(detector, runtime="onnxruntime", kind=md.FACE_DETECTOR)
    with pytest.raises(engine_check.CheckError, match=r"boxes of \d+ confident anchors max \|diff\| 4\.00 px"):
        engine_check.verify_engine(detector, meta, shifted, "fp16", backend=backend)
    with pytest.raises(engine_check.CheckError, match="check set .* is for a face_detector"):
        engine_check.verify_engine(SHIPPED_MODEL, onnx_model_metadata(SHIPPED_MODEL), det_set, "fp16", backend=backend)
    backend.close()


def test_a_damaged_check_set_is_named(tmp_path):
    bad = tmp_path / "model.check.npz"
    np.savez(str(bad), inputs=np.zeros((2, 1, 48, 48), np.float32))
    with pytest.raises(BackendError, match="model.check.npz: check set has no 'output_0' field"):
        engine_check.load_check_set(str(bad))
    (tmp_path / "junk.check.npz").write_bytes(b"not a zip")
    with pytest.raises(BackendError, match="junk.check.npz: not a readable check set"):
        engine_check.load_check_set(str(tmp_path / "junk.check.npz"))


def test_cuda_errors_become_the_projects_errors(monkeypatch, tiny_onnx, tmp_path, caplog):
    """cuInit failing (a user outside the 'video' group): a clear BackendError from the readiness check,
    the backend and the builder path; the agent falls back to ONNX Runtime and says why."""
    from jetson import agent, trt_backend

    caplog.set_level(logging.INFO, logger="jetson")  # whatever level an earlier test left the root logger at
    install_fakes(monkeypatch, "8.2.1.8", fail_init="cuInit failed: unknown error")
    ok, why = trt_backend.gpu_ready()
    assert not ok and "cuInit failed: unknown error" in why and "'video' group" in why
    with pytest.raises(BackendError, match="CUDA: cuInit/device 0 query failed .*video"):
        TensorRTBackend(str(tmp_path / "x.engine"), tiny_meta())
    with pytest.raises(BackendError, match="cuInit failed"):
        je.ensure_engine(tiny_onnx, engine_dir=str(tmp_path / "e"), builder=FakeBuilder(), log=None)
    config = load_config(None, env={}, overrides={"model": tiny_onnx})
    clf = agent.make_classifier(config)
    assert clf.runtime == "onnxruntime"
    assert "cuInit failed" in caplog.text and "ONNX Runtime" in caplog.text
    with pytest.raises(BackendError, match="config asks for runtime 'tensorrt': CUDA: cuInit"):
        agent.make_classifier(dict(config, runtime="tensorrt"))
    with pytest.raises(BackendError, match="cuInit failed"):
        agent.check_gpu()


def test_check_gpu_cli_without_tensorrt_is_clear():
    from edge.backends.base import module_installed

    if module_installed("tensorrt") and module_installed("pycuda"):
        pytest.skip("TensorRT is installed here: the message for a missing one cannot be shown")
    proc = subprocess.run(
        [sys.executable, "-m", "jetson", "--check-gpu"], cwd=str(REPO), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "TensorRT/pycuda not installed" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "jetson.engine", "model.onnx"],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "jetson.engine: error:" in proc.stderr and "Traceback" not in proc.stderr


def test_a_check_set_of_another_model_version_is_not_used(trt_version, tiny_onnx, tmp_path):
    checks = tiny_check_set(tiny_onnx, shift=0.5)._replace(onnx_sha256="0" * 64)
    lines = []
    path = je.ensure_engine(tiny_onnx, engine_dir=str(tmp_path), check=checks, builder=FakeBuilder(), log=lines.append)
    assert any("belongs to another version" in line for line in lines)
    assert je.read_engine_info(path)["engine"]["check"] is None
