"""Conversions of a tiny model exported like a real one: ONNX, OpenVINO, DeepLens (TensorRT skips here).

The tiny model has the real models' input (``face`` [N,48,48,1], Rescaling inside), conv + batch
norm + pooling + dropout + dense softmax; it is fitted briefly on real Train faces when the FER+
data is there (untrained otherwise) and exported with train.export. Parity is checked on real
Valid faces (skipped without the data) and on synthetic faces (always runs).
"""

import os
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from convert import formats, parity, trt_ops
from convert.errors import ConversionError
from edge import metadata as md
from edge.preprocess import prepare_faces
from fer_testdata import REPO
from fer_testdata import synthetic_faces as make_synthetic_faces

TRT_SKIP = "TensorRT not installed: engines are built on the Jetson (JetPack 4.6) or a host with TensorRT"


@pytest.fixture(scope="module")
def train_faces(request):
    """A few hundred real Train faces and their distributions, or None without FER+ data."""
    try:
        data = request.getfixturevalue("ferplus")
    except pytest.skip.Exception:
        return None
    faces, dists, _ = data.split("FER2013Train").labelled("majority")
    return faces[:384], dists[:384]


@pytest.fixture(scope="module")
def savedmodel(tmp_path_factory, train_faces):
    import keras
    from keras import layers

    from train.export import export_savedmodel
    from train.models import NORM_OFFSET, NORM_SCALE

    keras.utils.set_random_seed(7)
    inp = keras.Input((48, 48, 1), name="face")
    x = layers.Rescaling(NORM_SCALE, offset=NORM_OFFSET, name="normalize")(inp)
    for ch in (8, 16):
        x = layers.Conv2D(ch, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.2)(x)
    model = keras.Model(inp, layers.Dense(8, activation="softmax", name="probabilities")(x), name="tiny")
    if train_faces is not None:
        model.compile("adam", "categorical_crossentropy")
        faces, dists = train_faces
        model.fit(faces[:, :, :, None].astype("float32"), dists, epochs=2, batch_size=64, verbose=0)
    root = tmp_path_factory.mktemp("tiny")
    path = str(root / "tiny.keras")
    model.save(path)
    meta = md.default_metadata(48, 48)
    meta["model"] = {"name": "tiny", "trained": train_faces is not None}
    md.write(meta, md.sidecar_path(path))
    return export_savedmodel(path, str(root / "saved_model"))


@pytest.fixture(scope="module")
def source(savedmodel):
    from convert.common import SavedModelSource

    return SavedModelSource(savedmodel)


@pytest.fixture(scope="module")
def synthetic_faces():
    return make_synthetic_faces(48, seed=3)


@pytest.fixture(params=["real", "synthetic"])
def faces(request, synthetic_faces):
    if request.param == "synthetic":
        return synthetic_faces
    return request.getfixturevalue("valid_faces")[0][:256]


def reference(source, faces):
    return source.predict(prepare_faces(faces, source.meta))


@pytest.fixture(scope="module")
def onnx_path(savedmodel, synthetic_faces, tmp_path_factory):
    from convert.onnx_export import export_onnx

    return export_onnx(savedmodel, str(tmp_path_factory.mktemp("onnx") / "out"), faces=synthetic_faces)


# ---------------------------------------------------------------- the formats


def test_model_outputs_vary_so_parity_means_something(source, synthetic_faces):
    probs = reference(source, synthetic_faces)
    assert probs.shape == (len(synthetic_faces), 8)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert probs.std(axis=0).max() > 1e-3


def test_onnx_matches_savedmodel(savedmodel, source, faces, tmp_path):
    import onnxruntime as ort

    from convert.onnx_export import export_onnx

    logs = []
    path = export_onnx(savedmodel, str(tmp_path / "onnx"), faces=faces, log=logs.append)
    assert path == str(tmp_path / "onnx" / "model.onnx") and os.path.isfile(path)
    assert any("same argmax on {0}/{0}".format(len(faces)) in line for line in logs), logs
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {"face": prepare_faces(faces, md.with_layout(source.meta, "NCHW"))})[0]
    want = reference(source, faces)
    assert np.abs(got - want).max() <= 1e-4
    assert (got.argmax(1) == want.argmax(1)).all()


def test_onnx_structure_metadata_and_operators(onnx_path, source):
    import onnx

    from convert.onnx_export import all_nodes
    from edge.onnx_meta import onnx_model_metadata

    model = onnx.load(onnx_path)
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) <= 13
    (inp,), (out,) = model.graph.input, model.graph.output
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "face" and dims == ["N", 1, 48, 48]
    assert out.name == "probabilities"
    assert {n.op_type for n in all_nodes(model.graph)} <= trt_ops.SUPPORTED_OPS
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}  # folded into Conv
    props = dict((p.key, p.value) for p in model.metadata_props)  # what the onnx package sees
    assert md.loads(props[md.ONNX_METADATA_KEY]) == md.with_layout(source.meta, "NCHW")
    assert onnx_model_metadata(onnx_path) == md.with_layout(source.meta, "NCHW")  # the one reader (no onnx needed)


def test_openvino_matches_savedmodel(savedmodel, source, faces, tmp_path):
    import openvino as ov

    from convert.openvino_export import export_openvino, openvino_predictor, read_rt_metadata

    path = export_openvino(savedmodel, str(tmp_path / "ov"), faces=faces)
    assert path.endswith("model.xml") and os.path.isfile(path[:-4] + ".bin")
    meta = md.find(path)  # the sidecar model.xml.fer_edge.json
    assert meta == md.with_layout(source.meta, "NCHW")
    model = ov.Core().read_model(path)
    assert read_rt_metadata(model) == meta
    assert model.input(0).get_any_name() == "face" and str(model.input(0).get_partial_shape()) == "[?,1,48,48]"
    f16 = ov.Type.f16
    assert f16 in {op.get_output_element_type(0) for op in model.get_ops() if op.get_type_name() == "Constant"}
    got = openvino_predictor(path)(prepare_faces(faces, meta))
    want = reference(source, faces)
    assert np.abs(got - want).max() <= 1e-3
    assert (got.argmax(1) == want.argmax(1)).all()


def test_deeplens_frozen_graph_matches_savedmodel(savedmodel, source, faces, tmp_path):
    import tensorflow as tf

    from convert.deeplens_export import FORBIDDEN_OPS, export_deeplens

    path = export_deeplens(savedmodel, str(tmp_path / "dl"), faces=faces)
    assert path.endswith("model.tar.gz")
    with tarfile.open(path) as tar:
        assert sorted(tar.getnames()) == ["model.pb", "model.pb.fer_edge.json"]
        pb = tar.extractfile("model.pb").read()
        packed = md.loads(tar.extractfile("model.pb.fer_edge.json").read().decode())
    # NHWC, the device's 3 channels (the gray face repeated), no flip averaging; also beside the tarball
    assert packed == md.find(path) == dict(source.meta, input=dict(source.meta["input"], channels=3))
    assert "flip_average" not in packed["model"]
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(pb)
    nodes = {n.name: n for n in graph_def.node}
    assert nodes["face"].op == "Placeholder" and nodes["probabilities"].op == "Identity"
    assert [d.size for d in nodes["face"].attr["shape"].shape.dim] == [-1, 48, 48, 3]
    ops = {n.op for n in graph_def.node}
    assert not ops & FORBIDDEN_OPS and "FusedBatchNormV3" not in ops and "AddV2" not in ops
    assert not graph_def.library.function
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        got = session.run("probabilities:0", {"face:0": np.repeat(prepare_faces(faces, source.meta), 3, axis=3)})
    want = reference(source, faces)
    assert np.abs(got - want).max() <= 1e-5
    assert (got.argmax(1) == want.argmax(1)).all()


# ---------------------------------------------------------------- bad input


def test_operator_outside_tensorrt_list_is_named(savedmodel, synthetic_faces, tmp_path):
    from onnx import TensorProto, helper

    from convert.onnx_export import check_tensorrt_ops, export_onnx

    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"], name="ok"),
            helper.make_node("NonZero", ["r"], ["y"], name="where_nz"),
            helper.make_node("Gelu", ["r"], ["z"], name="custom", domain="com.microsoft"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [1, None])],
    )
    with pytest.raises(ConversionError, match=r"NonZero \(node where_nz\); com\.microsoft:Gelu \(node custom\)"):
        check_tensorrt_ops(helper.make_model(graph))

    out = tmp_path / "onnx"
    with pytest.raises(ConversionError, match=r"TensorRT 8\.2.*Softmax \(node .*Softmax"):
        export_onnx(savedmodel, str(out), faces=synthetic_faces, supported_ops=trt_ops.SUPPORTED_OPS - {"Softmax"})
    assert os.listdir(str(tmp_path)) == []  # nothing half-written, no staging folder left


def test_existing_output_is_refused_unless_forced(savedmodel, synthetic_faces, tmp_path):
    from convert.deeplens_export import export_deeplens

    out = tmp_path / "dl"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    with pytest.raises(ConversionError, match="already exists.*force"):
        export_deeplens(savedmodel, str(out), faces=synthetic_faces)
    assert (out / "old.txt").read_text() == "keep me"
    path = export_deeplens(savedmodel, str(out), faces=synthetic_faces, force=True)
    assert sorted(os.listdir(str(out))) == ["model.tar.gz", "model.tar.gz.fer_edge.json"] and os.path.isfile(path)
    assert sorted(os.listdir(str(tmp_path))) == ["dl"]


def test_missing_metadata_is_refused(savedmodel, synthetic_faces, tmp_path):
    from convert.onnx_export import export_onnx

    broken = tmp_path / "sm"
    shutil.copytree(savedmodel, str(broken))
    (broken / md.METADATA_FILENAME).unlink()
    with pytest.raises(ConversionError, match=r"fer_edge\.json: model metadata file not found"):
        export_onnx(str(broken), str(tmp_path / "out"), faces=synthetic_faces)
    assert not (tmp_path / "out").exists()


def test_metadata_input_shape_must_match_the_graph(savedmodel, synthetic_faces, tmp_path):
    from convert.openvino_export import export_openvino

    wrong = tmp_path / "sm"
    shutil.copytree(savedmodel, str(wrong))
    meta = md.read(str(wrong / md.METADATA_FILENAME))
    meta["input"]["height"] = meta["input"]["width"] = 64
    md.write(meta, str(wrong / md.METADATA_FILENAME))
    with pytest.raises(ConversionError, match=r"64x64x1.*\[None, 48, 48, 1\]"):
        export_openvino(str(wrong), str(tmp_path / "out"), faces=synthetic_faces)
    assert not (tmp_path / "out").exists()


def test_no_real_faces_is_an_error_not_noise(savedmodel, tmp_path, monkeypatch):
    from convert.onnx_export import export_onnx

    monkeypatch.setenv(parity.DATA_ENV, str(tmp_path / "nowhere"))
    monkeypatch.setattr(parity, "REPO", str(tmp_path))
    with pytest.raises(ConversionError, match="--data.*--faces"):
        export_onnx(savedmodel, str(tmp_path / "out"), log=print)
    with pytest.raises(ConversionError, match="uint8"):
        parity.parity_faces(np.zeros((4, 48, 48), np.float32))


def test_parity_compare_numbers_and_near_ties():
    ref = np.array([[0.7, 0.2, 0.1], [0.4, 0.3995, 0.2005]])
    ok = parity.compare("x", ref, ref + [[0, 0, 0], [-4e-4, 4e-4, 0]], atol=1e-3)
    assert ok.argmax_agree == 1 and ok.near_ties == 1 and ok.max_abs_diff == pytest.approx(4e-4)
    assert "1 near-ties" in str(ok)
    with pytest.raises(ConversionError, match=r"max \|diff\| of probabilities 2\.00e-02 > 1e-03"):
        parity.compare("x", ref, ref + [[0, 0.02, -0.02], [0, 0, 0]], atol=1e-3)
    flipped = ref[:, [1, 0, 2]]
    with pytest.raises(ConversionError, match="top emotion differs on 1 of 2 faces"):
        parity.compare("x", ref, flipped, atol=1.0, tie_margin=0.01)  # face 1 is a near-tie


def test_formats_table():
    assert formats.NAMES == ("onnx", "openvino", "deeplens", "tensorrt")
    assert formats.get("openvino").suffix == ".xml"
    assert formats.for_path("a/model.tar.gz").name == "deeplens"
    from convert.onnx_export import export_onnx

    assert formats.converter("onnx") is export_onnx
    with pytest.raises(ValueError, match="unknown format"):
        formats.get("tflite")
    assert formats.missing_requirements("deeplens") == []


# ---------------------------------------------------------------- TensorRT


def test_engine_naming_trtexec_and_staleness_without_tensorrt(onnx_path, tmp_path):
    from edge.onnx_meta import onnx_model_metadata
    from jetson import engine as je
    from jetson.engine_build import trtexec_command
    from jetson.trt_backend import DeviceInfo

    name = je.engine_filename("model", "8.2.1.8", "fp16", "NVIDIA Tegra X1", "5.3")
    assert name == "model.trt8.2.1.8.fp16.nvidia-tegra-x1.sm53.engine"
    cmd82 = trtexec_command("m.onnx", name, "fp16", "face", (1, 48, 48), 8, 4, 256, "8.2.1.8")
    assert "--workspace=256" in cmd82 and "--fp16" in cmd82 and "--maxShapes=face:8x1x48x48" in cmd82
    cmd10 = trtexec_command("m.onnx", "e", "int8", "face", (1, 48, 48), 8, 4, 256, "10.3.0", "c.calib")
    assert "--memPoolSize=workspace:256" in cmd10 and "--int8" in cmd10 and "--calib=c.calib" in cmd10
    assert "--explicitBatch" not in cmd10 and "--workspace=" not in cmd10

    onnx_copy = str(tmp_path / "model.onnx")
    shutil.copy(onnx_path, onnx_copy)
    engine = str(tmp_path / name)
    nano = je.runtime_key("8.2.1.8", DeviceInfo("NVIDIA Tegra X1", "5.3", "10.2"))
    assert je.engine_staleness(engine, onnx_copy, nano).startswith("no engine")
    with open(engine, "wb") as handle:
        handle.write(b"not really an engine")
    info = onnx_model_metadata(onnx_copy)
    info["engine"] = dict(nano, onnx_sha256=je.sha256_file(onnx_copy), max_batch=8, precision="fp16")
    md.write(info, md.sidecar_path(engine))
    assert je.engine_staleness(engine, onnx_copy, nano) is None
    assert je.engine_staleness(engine, onnx_copy, nano, max_batch=16) == "built for max batch 8"
    assert "TensorRT 8.2.1.8" in je.engine_staleness(engine, onnx_copy, dict(nano, tensorrt_version="10.3.0"))
    assert "GPU" in je.engine_staleness(engine, onnx_copy, dict(nano, gpu="Orin"))
    with open(onnx_copy, "ab") as handle:
        handle.write(b"\0")
    assert je.engine_staleness(engine, onnx_copy, nano) == "the ONNX model changed"


def test_cli_convert_tensorrt_without_tensorrt_fails_clearly(savedmodel, tmp_path):
    if formats.missing_requirements("tensorrt") == []:
        pytest.skip("TensorRT is installed here; the missing-TensorRT message cannot be shown")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fer_edge",
            "convert",
            "tensorrt",
            "--model",
            savedmodel,
            "--out",
            str(tmp_path / "trt"),
        ],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "TensorRT is not installed" in proc.stderr and "Jetson" in proc.stderr
    assert not (tmp_path / "trt").exists()


def test_tensorrt_engine_matches_savedmodel(savedmodel, synthetic_faces, tmp_path):
    from edge.backends.base import module_installed

    if not module_installed("tensorrt"):
        pytest.skip(TRT_SKIP)
    if not module_installed("pycuda"):
        pytest.skip("pycuda not installed: needed for the engine check and INT8 calibration")
    from convert import tensorrt_build as tb
    from jetson import engine as je

    engine = tb.export_tensorrt(
        savedmodel, str(tmp_path / "trt"), faces=synthetic_faces, precision="fp16", max_batch=8, log=print
    )
    info = je.read_engine_info(engine)
    assert info["engine"]["check"]["items"] == len(synthetic_faces)
    assert (
        je.engine_staleness(
            engine, str(tmp_path / "trt" / "model.onnx"), {k: info["engine"][k] for k in je.RUNTIME_FIELDS}
        )
        is None
    )


# ---------------------------------------------------------------- CLI


def test_cli_convert_onnx(savedmodel, synthetic_faces, tmp_path):
    faces = tmp_path / "faces.npy"
    np.save(str(faces), synthetic_faces)
    out = tmp_path / "onnx"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fer_edge",
            "convert",
            "onnx",
            "--model",
            savedmodel,
            "--out",
            str(out),
            "--faces",
            str(faces),
            "--check-faces",
            "32",
        ],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "same argmax on 32/32" in proc.stdout and str(out / "model.onnx") in proc.stdout
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fer_edge",
            "convert",
            "onnx",
            "--model",
            savedmodel,
            "--out",
            str(out),
            "--faces",
            str(faces),
        ],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "already exists" in proc.stderr
