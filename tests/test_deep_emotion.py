"""Deep-Emotion (``--arch deep-emotion``): the sampler against a plain bilinear reference, a short
training run by our trainer on a few real faces, and its exports: SavedModel, ONNX opset 13 with no
GridSample that passes the TensorRT 8.2 operator list and matches Keras, OpenVINO, and the DeepLens
graph's refusal naming the op TensorFlow 1.4's toolchain lacks."""

import os

import numpy as np
import pytest

from convert import trt_ops
from convert.errors import ConversionError
from edge import metadata as md
from edge.preprocess import prepare_faces


def grid_sample_reference(image, theta):
    """PyTorch's affine_grid + grid_sample (bilinear, zeros, align_corners=False), written out per pixel."""
    n, h, w = image.shape
    out = np.zeros_like(image)
    for b in range(n):
        t = theta[b].reshape(2, 3)
        for i in range(h):
            for j in range(w):
                xn, yn = (2 * j + 1) / w - 1, (2 * i + 1) / h - 1
                sx, sy = t @ np.array([xn, yn, 1.0])
                px, py = ((sx + 1) * w - 1) / 2, ((sy + 1) * h - 1) / 2
                x0, y0 = int(np.floor(px)), int(np.floor(py))
                for xi, yi in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
                    if 0 <= xi < w and 0 <= yi < h:
                        out[b, i, j] += image[b, yi, xi] * (1 - abs(px - xi)) * (1 - abs(py - yi))
    return out


def test_sampler_is_bilinear_grid_sampling_with_zero_padding():
    from train.attention import IDENTITY, AffineSampler

    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (3, 12, 10)).astype("float32")
    theta = np.array(
        [
            IDENTITY,
            [0.8, 0.3, 0.1, -0.2, 0.9, -0.15],  # rotation, zoom and shift inside the image
            [1.7, -0.4, 0.6, 0.5, 1.5, -0.8],  # reaches far outside: the zero padding
        ],
        dtype="float32",
    )
    got = np.asarray(AffineSampler()([image[..., None], theta]))[..., 0]
    want = grid_sample_reference(image.astype("float64"), theta.astype("float64"))
    np.testing.assert_allclose(got, want, atol=2e-5)
    np.testing.assert_allclose(got[0], image[0], atol=2e-5)  # the identity reproduces the face
    assert np.abs(got[2]).min() == 0.0 and np.abs(got[2]).max() > 0.1  # some pixels padded, some sampled


def test_architecture_as_in_the_paper():
    from train.attention import IDENTITY
    from train.config import ARCHITECTURES as NAMES
    from train.models import build, count_macs

    assert "deep-emotion" in NAMES
    model = build("deep-emotion")
    assert model.input_shape == (None, 48, 48, 1) and model.output_shape == (None, 8)
    kernel, bias = model.get_layer("theta").get_weights()
    assert not kernel.any() and tuple(bias) == IDENTITY  # starts at the identity transform
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert [(c.filters, c.kernel_size) for c in convs] == [(8, (7, 7)), (10, (5, 5))] + [(10, (3, 3))] * 4
    dense = [layer.units for layer in model.layers if layer.__class__.__name__ == "Dense"]
    assert dense == [32, 6, 50, 8]
    assert model.count_params() < 100_000 and count_macs(model) < 10_000_000


@pytest.fixture(scope="module")
def run_dir(small_ferplus_dir, tmp_path_factory):
    """Three epochs of our trainer on 600 real faces (logit adjustment and balanced selection on)."""
    from train.config import TrainConfig
    from train.trainer import train

    run = str(tmp_path_factory.mktemp("de") / "run")
    config = TrainConfig(
        data=str(small_ferplus_dir),
        run_dir=run,
        arch="deep-emotion",
        epochs=3,
        batch_size=32,
        lr=3e-3,
        warmup_epochs=0,
        limit_valid=128,
        verbose=0,
        logit_adjust=1.0,
        select="balanced",
    )
    metrics = train(config, log=lambda line: None)
    assert metrics["epochs_run"] == 3 and 0.0 <= metrics["valid_accuracy"] <= 1.0
    return run


@pytest.fixture(scope="module")
def savedmodel(run_dir):
    """The trained network exported with its transform moved off the identity (zoom 0.8, turned,
    shifted: what a learned attention does) and its last layer scaled up (the short run leaves it
    near uniform), so the parity checks cover fractional sampling and outputs that differ by face."""
    import keras

    from train.export import export_savedmodel

    model = keras.saving.load_model(os.path.join(run_dir, "best.keras"))
    kernel, bias = model.get_layer("theta").get_weights()
    model.get_layer("theta").set_weights([kernel, bias + np.array([-0.2, 0.1, 0.05, -0.1, -0.2, 0.1], "float32")])
    head = model.get_layer("probabilities")
    head.set_weights([w * 30.0 for w in head.get_weights()])  # 3 epochs on 600 faces: near-uniform; sharpened
    path = os.path.join(run_dir, "moved.keras")
    model.save(path)
    md.write(md.read(os.path.join(run_dir, md.METADATA_FILENAME)), md.sidecar_path(path))
    return export_savedmodel(path, os.path.join(run_dir, "..", "saved_model"))


@pytest.fixture(scope="module")
def faces(valid_faces):
    return valid_faces[0][:128]


@pytest.fixture(scope="module")
def onnx_path(savedmodel, faces):
    from convert.onnx_export import export_onnx

    return export_onnx(savedmodel, os.path.join(savedmodel, "..", "onnx"), faces=faces)


def test_trained_model_moved_its_attention(run_dir):
    import keras

    model = keras.saving.load_model(os.path.join(run_dir, "best.keras"))
    assert model.get_layer("theta").get_weights()[0].any()  # the localization head learned something
    assert md.read(os.path.join(run_dir, md.METADATA_FILENAME))["model"]["architecture"] == "deep-emotion"


def test_onnx_opset13_no_gridsample_tensorrt_ops_and_parity(onnx_path, savedmodel, faces):
    import onnx
    import onnxruntime as ort

    from convert.common import SavedModelSource
    from convert.onnx_export import all_nodes

    model = onnx.load(onnx_path)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 13
    ops = {n.op_type for n in all_nodes(model.graph)}
    assert "GridSample" not in ops and {"MatMul", "Gather", "Floor"} <= ops
    assert not trt_ops.unsupported_nodes(all_nodes(model.graph))
    source = SavedModelSource(savedmodel)
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    got = session.run(None, {"face": prepare_faces(faces, md.with_layout(source.meta, "NCHW"))})[0]
    want = source.predict(prepare_faces(faces, source.meta))
    assert np.abs(got - want).max() <= 1e-4
    assert want.std(axis=0).max() > 1e-3  # outputs vary: the parity means something


def test_openvino_and_the_agents_loader(savedmodel, onnx_path, faces):
    from convert.common import SavedModelSource
    from convert.openvino_export import export_openvino
    from edge.classifier import load_classifier

    xml = export_openvino(savedmodel, os.path.join(savedmodel, "..", "openvino"), faces=faces)
    want = SavedModelSource(savedmodel).predict(
        prepare_faces(faces, md.read(os.path.join(savedmodel, md.METADATA_FILENAME)))
    )
    for path, runtime, atol in ((onnx_path, "onnxruntime", 1e-4), (xml, "openvino", 1e-3)):
        classifier = load_classifier(path, runtime=runtime)
        got = np.asarray(classifier.predict(faces))
        assert classifier.runtime == runtime
        assert np.abs(got - want).max() <= atol, path


def test_deeplens_graph_is_refused_naming_the_op(savedmodel, faces, tmp_path):
    from convert.deeplens_export import export_deeplens

    with pytest.raises(ConversionError, match=r"GatherV2|Floor|Cast"):
        export_deeplens(savedmodel, str(tmp_path / "dl"), faces=faces)
    assert not os.path.exists(str(tmp_path / "dl" / "model.tar.gz"))


# ---------------------------------------------------------------- bad input: a GridSample export


def test_stdlib_reader_agrees_with_the_onnx_package(onnx_path):
    import onnx

    from convert.onnx_export import all_nodes
    from jetson.onnx_ops import read_operators, tensorrt_problems

    opset, nodes = read_operators(onnx_path)
    model = onnx.load(onnx_path)
    assert opset == 13
    assert sorted((n.op_type, n.name) for n in nodes) == sorted((n.op_type, n.name) for n in all_nodes(model.graph))
    assert tensorrt_problems(onnx_path) == []


@pytest.fixture
def gridsample_onnx(tmp_path):
    """What a PyTorch export of Deep-Emotion gives: opset 16 with GridSample (fer-edge metadata embedded)."""
    from onnx import TensorProto, helper, numpy_helper

    from convert.onnx_export import embed_metadata

    rng = np.random.default_rng(0)
    grid = np.clip(rng.normal(0, 0.5, (1, 48, 48, 2)), -1, 1).astype("float32")
    weights = rng.normal(0, 0.01, (48 * 48, 8)).astype("float32")
    graph = helper.make_graph(
        [
            helper.make_node("GridSample", ["face", "grid"], ["sampled"], name="stn_sampler"),
            helper.make_node("Flatten", ["sampled"], ["flat"], name="flatten"),
            helper.make_node("MatMul", ["flat", "w"], ["logits"], name="fc"),
            helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax"),
        ],
        "deep_emotion_torch",
        [helper.make_tensor_value_info("face", TensorProto.FLOAT, [1, 1, 48, 48])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 8])],
        [numpy_helper.from_array(grid, "grid"), numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    meta = md.default_metadata(48, 48, "NCHW")
    meta["model"] = {"name": "deep-emotion-torch"}
    embed_metadata(model, meta)
    path = tmp_path / "deep_emotion_opset16.onnx"
    path.write_bytes(model.SerializeToString())
    return str(path)


def test_jetson_engine_builder_refuses_gridsample_naming_file_and_operator(gridsample_onnx, capsys):
    from jetson import engine

    assert engine.main([gridsample_onnx, "--out-dir", os.path.dirname(gridsample_onnx)]) == 2
    err = capsys.readouterr().err
    assert gridsample_onnx in err and "operator GridSample (node stn_sampler)" in err and "opset 16" in err
    assert not [n for n in os.listdir(os.path.dirname(gridsample_onnx)) if n.endswith(".engine")]


def test_jetson_bundle_refuses_gridsample_naming_file_and_operator(gridsample_onnx, tmp_path, capsys):
    from fer_edge.cli import main

    out = tmp_path / "dist"
    assert main(["bundle", "jetson", "--model", gridsample_onnx, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert gridsample_onnx in err and "operator GridSample (node stn_sampler)" in err and "opset 16" in err
    assert not out.exists() or not os.listdir(str(out))


def test_openvino_keeps_fp32_weights_when_fp16_misses_the_tolerance(savedmodel, faces, tmp_path, monkeypatch):
    import openvino as ov

    from convert import openvino_export

    monkeypatch.setattr(openvino_export, "ATOL", 2e-6)  # FP16 weights miss this, FP32 ones meet it
    logs = []
    xml = openvino_export.export_openvino(savedmodel, str(tmp_path / "ov"), faces=faces, log=logs.append)
    assert any("FP16 weights miss the tolerance" in line for line in logs), logs
    assert any("FP32 weights" in line for line in logs)
    constants = [op for op in ov.Core().read_model(xml).get_ops() if op.get_type_name() == "Constant"]
    assert ov.Type.f16 not in {op.get_output_element_type(0) for op in constants}
