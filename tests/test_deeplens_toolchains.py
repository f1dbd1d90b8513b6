"""The DeepLens model artifact read by the device's real old toolchains (issue 16).

The shipped model (flip-averaged inside its SavedModel) is converted by ``fer-edge convert deeplens``
and then, with nothing but the artifact:

* TensorFlow 1.4.0 on Python 3.6.15 (the version the DeepLens guide documents) imports the frozen
  graph and runs it;
* OpenVINO 2021.4.2's classic Model Optimizer (``mo``, TensorFlow 1.15 front end, Python 3.7.16)
  converts it to FP16 and FP32 IRs with static shapes, and its Inference Engine runs them one
  H x W x 3 image per call, as ``doInference`` takes frames;
* the awscam backend on the ``awscam``/``mo`` test doubles (the real OpenVINO runtime inside).

Every runtime runs the views of ``deeplens.awscam_backend.device_views`` (the gray face in three
channels, and its mirror image because the metadata says the runtime flip-averages) and combines them
with ``combine_views``, and each result is compared with the SavedModel's probabilities.

The old toolchains live in venvs under build/old-pythons (``make old-pythons``, run by ``make
test``); a test whose venv is absent skips and says how to build it. Real FER+ Valid faces are used
when the data is there ($FER_EDGE_DATA), synthetic faces otherwise.
"""

import os
import re
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

from fer_testdata import REPO, synthetic_faces

OLD_VENVS = REPO / "build" / "old-pythons"
SHIPPED = REPO / "models" / "ferplus-vgg13bn-balanced-48" / "saved_model"  # the default model
DEVICE_ENVS = REPO / "tests" / "device_envs"
FACES = 96
TF14_ATOL = 1e-5
IR_FP16_ATOL = 1e-2
IR_FP32_ATOL = 1e-4


def old_python(name):
    """The python of build/old-pythons/NAME, or a skip that says how to build it."""
    python = OLD_VENVS / name / "bin" / "python"
    if not (OLD_VENVS / name / ".installed").is_file() or not python.exists():
        pytest.skip(
            "{} not built: run `make old-pythons` (needs pyenv's Python {}; `make test` builds it)".format(
                OLD_VENVS / name, "3.6.15" if name.startswith("py36") else "3.7.16"
            )
        )
    return str(python)


def run(cmd, timeout=600, **kwargs):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kwargs)
    assert proc.returncode == 0, "{}\n{}\n{}".format(" ".join(map(str, cmd)), proc.stdout[-4000:], proc.stderr[-4000:])
    return proc


@pytest.fixture(scope="module")
def tf14_python():
    return old_python("py36-tf14")


@pytest.fixture(scope="module")
def faces(request):
    """(uint8 faces [96, 48, 48], description): FER+ Valid when present, else synthetic."""
    try:
        real, _ = request.getfixturevalue("valid_faces")
        return real[:FACES], "{} FER+ Valid faces".format(FACES)
    except pytest.skip.Exception:
        return synthetic_faces(FACES, seed=16), "{} synthetic faces (no FER+ data)".format(FACES)


@pytest.fixture(scope="module")
def artifact(faces, tmp_path_factory):
    """The shipped model's DeepLens artifact: tarball, .pb path, metadata."""
    from convert.deeplens_export import export_deeplens, read_pb

    out = tmp_path_factory.mktemp("deeplens") / "out"
    tar = export_deeplens(str(SHIPPED), str(out), faces=faces[0])
    pb, meta = read_pb(tar, "model")
    pb_path = out / "model.pb"
    pb_path.write_bytes(pb)
    return {"tar": tar, "pb": pb_path, "meta": meta, "bytes": pb}


@pytest.fixture(scope="module")
def reference(faces):
    from convert.common import SavedModelSource
    from edge.preprocess import prepare_faces

    source = SavedModelSource(str(SHIPPED))
    return source.predict(prepare_faces(faces[0], source.meta))


@pytest.fixture(scope="module")
def views(faces, artifact, tmp_path_factory):
    """The device's input arrays [V, N, 48, 48, 3] in an .npz for the old toolchains."""
    from deeplens.awscam_backend import device_views
    from edge.preprocess import prepare_faces

    stacked = np.stack(device_views(prepare_faces(faces[0], artifact["meta"]), artifact["meta"]))
    path = tmp_path_factory.mktemp("views") / "views.npz"
    np.savez(
        str(path), views=stacked, input=artifact["meta"]["input"]["name"], output=artifact["meta"]["output"]["name"]
    )
    return stacked, path


def compare(what, reference, outputs, atol):
    from convert.parity import compare as parity_compare
    from deeplens.awscam_backend import combine_views

    got = combine_views(list(outputs))
    report = parity_compare(what, reference, got, atol)  # raises with the details when outside
    print(report)
    assert report.max_abs_diff <= atol and report.argmax_agree + report.near_ties == len(reference)
    return report


# ---------------------------------------------------------------- the artifact itself


def test_artifact_is_static_three_channel_and_mirror_free(artifact, faces):
    import tensorflow as tf

    from convert.tf1_graph import DEEPLENS_TF_OPS, SHAPE_OPS

    meta = artifact["meta"]
    assert meta["input"]["channels"] == 3 and meta["input"]["layout"] == "NHWC"
    assert meta["model"]["flip_average"] == "runtime" and meta["model"]["test_time"] == "flip-average"
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(artifact["bytes"])
    ops = {n.op for n in graph_def.node}
    assert ops <= DEEPLENS_TF_OPS and not ops & SHAPE_OPS, sorted(ops)
    (face,) = [n for n in graph_def.node if n.op == "Placeholder"]
    assert [d.size for d in face.attr["shape"].shape.dim] == [-1, 48, 48, 3]
    # no mirror left: no MatMul by an anti-diagonal matrix, and only 2-D MatMuls (the Dense layers)
    from convert.tf1_graph import mirror_ops

    assert mirror_ops(graph_def) == []
    # every constant carries its values (TF 2 leaves zero-valued ones empty; TF 1.4 cannot read those)
    consts = [n for n in graph_def.node if n.op == "Const"]
    assert consts and all(len(n.attr["value"].tensor.tensor_content) > 0 for n in consts)
    reshapes = [n for n in graph_def.node if n.op == "Reshape"]
    names = {n.name: n for n in graph_def.node}
    assert reshapes and all(names[r.input[1]].op == "Const" for r in reshapes)
    with tarfile.open(artifact["tar"]) as tar:
        assert sorted(tar.getnames()) == ["model.pb", "model.pb.fer_edge.json"]


# ---------------------------------------------------------------- TensorFlow 1.4 (Python 3.6)


def test_tensorflow_1_4_imports_and_runs_the_graph(tf14_python, artifact, views, reference, tmp_path):
    python = tf14_python
    out = tmp_path / "tf14.npz"
    proc = run([python, DEVICE_ENVS / "tf14_run.py", artifact["pb"], views[1], out], cwd=str(tmp_path))
    assert "tensorflow 1.4.0" in proc.stdout and "python 3.6.15" in proc.stdout, proc.stdout
    result = np.load(str(out))
    assert result["outputs"].shape == (2, FACES, 8)  # the face and its mirror image, per face
    compare("TensorFlow 1.4.0 (Python 3.6)", reference, result["outputs"], TF14_ATOL)


# ---------------------------------------------------------------- OpenVINO 2021.4 classic Model Optimizer


SHAPE_LAYERS = {"ShapeOf", "Gather", "StridedSlice", "Concat", "Squeeze", "Unsqueeze", "Range", "Broadcast"}


def ir_layers(xml_path):
    """(layer types, every port shape) of an IR .xml."""
    root = ElementTree.parse(str(xml_path)).getroot()
    types, shapes = [], []
    for layer in root.iter("layer"):
        types.append(layer.get("type"))
        for port in layer.iter("port"):
            shapes.append([dim.text for dim in port.iter("dim")])
    return types, shapes


@pytest.fixture(scope="module")
def mo_python():
    return old_python("py37-mo2021")


@pytest.fixture(scope="module")
def mo_irs(mo_python, artifact, tmp_path_factory):
    """The classic Model Optimizer's FP16 and FP32 IRs of the .pb, as the DeepLens optimizer makes them."""
    python = mo_python
    mo = os.path.join(os.path.dirname(python), "mo")
    out = tmp_path_factory.mktemp("mo")
    irs, logs = {}, {}
    for precision in ("FP16", "FP32"):
        proc = run(
            [
                mo,
                "--input_model",
                artifact["pb"],
                "--input_shape",
                "[1,48,48,3]",
                "--data_type",
                precision,
                "--model_name",
                "model_" + precision,
                "--output_dir",
                out,
            ],
            cwd=str(out),
        )
        logs[precision] = proc.stdout
        irs[precision] = out / ("model_" + precision + ".xml")
    return irs, logs


def test_model_optimizer_2021_4_converts_to_a_static_ir(mo_irs):
    irs, logs = mo_irs
    for precision, xml in irs.items():
        assert "Model Optimizer version: \t2021.4.2" in logs[precision] or re.search(
            r"Model Optimizer version:\s+2021\.4\.2", logs[precision]
        ), logs[precision][-2000:]
        assert xml.is_file() and xml.with_suffix(".bin").is_file()
        types, shapes = ir_layers(xml)
        assert not set(types) & SHAPE_LAYERS, sorted(set(types))
        assert "Convolution" in types and "SoftMax" in types
        # static: every dimension of every port is a positive integer (input [1,3,48,48] NCHW)
        assert shapes and all(d is not None and d.isdigit() and int(d) > 0 for s in shapes for d in s), shapes
        params = [
            layer for layer in ElementTree.parse(str(xml)).getroot().iter("layer") if layer.get("type") == "Parameter"
        ]
        assert len(params) == 1 and params[0].find("data").get("shape").replace(" ", "") == "1,3,48,48"
        assert params[0].find("data").get("element_type") == {"FP16": "f16", "FP32": "f32"}[precision]


@pytest.mark.parametrize("precision,atol", [("FP16", IR_FP16_ATOL), ("FP32", IR_FP32_ATOL)])
def test_inference_engine_2021_4_matches_the_savedmodel(mo_python, mo_irs, views, reference, precision, atol, tmp_path):
    python = mo_python
    out = tmp_path / "ie.npz"
    proc = run([python, DEVICE_ENVS / "ie2021_run.py", mo_irs[0][precision], views[1], out, "CPU"], cwd=str(tmp_path))
    assert "inference engine 2021.4.2" in proc.stdout and "[1, 3, 48, 48]" in proc.stdout, proc.stdout
    result = np.load(str(out))
    compare(
        "OpenVINO 2021.4.2 {} IR, Inference Engine on the CPU".format(precision), reference, result["outputs"], atol
    )


# ---------------------------------------------------------------- the awscam backend (doubles)


DOUBLES = str(REPO / "tests" / "doubles")


@pytest.fixture()
def doubles():
    """tests/doubles first on sys.path (awscam, mo), forgotten afterwards."""
    import importlib

    saved = {k: sys.modules.pop(k) for k in ("awscam", "mo") if k in sys.modules}
    sys.path.insert(0, DOUBLES)
    try:
        yield importlib.import_module("awscam"), importlib.import_module("mo")
    finally:
        sys.path.remove(DOUBLES)
        for name in ("awscam", "mo"):
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def test_awscam_backend_flip_averages_the_shipped_model(doubles, artifact, faces, reference, tmp_path):
    import shutil

    awscam, mo = doubles
    from deeplens.awscam_backend import AwscamBackend
    from edge.classifier import EmotionClassifier

    shutil.copy(artifact["tar"], str(tmp_path / "model.tar.gz"))
    del mo.calls[:]
    gpu = EmotionClassifier(AwscamBackend(str(tmp_path)))
    # AWS's TensorFlow sample call: no channel option for a 3-channel graph (the folders only, as the
    # artifact is not in /opt/awscam/artifacts)
    assert mo.calls[0]["platform"] == "tf" and set(mo.calls[0]["aux_inputs"]) == {"--models-dir", "--output-dir"}
    assert gpu.backend.xml.endswith("tf_model_FP16_FUSED.xml")
    model = awscam.Model.instances[-1]
    del model.inputs[:]
    probs = gpu.predict(faces[0])
    assert len(model.inputs) == 2 * FACES and set(model.inputs) == {((48, 48, 3), "float32")}
    # The DeepLens artifact carries the SavedModel's calibration; the classifier applies it after the
    # engine, so the reference is the SavedModel's probabilities at that temperature (T < 1 stretches
    # the IR's differences by up to 1/T).
    from convert.common import SavedModelSource
    from edge.calibration import apply_temperature

    temperature = SavedModelSource(str(SHIPPED)).meta["calibration"]["temperature"]
    assert gpu.temperature == temperature
    reference = apply_temperature(reference, temperature)
    stretch = 1.0 / min(1.0, temperature)
    compare("awscam backend (GPU config, FP16 IR on the doubles)", reference, [probs], IR_FP16_ATOL * stretch)
    # the CPU plugin takes an FP32 IR: asked of the optimizer, and an FP16 IR is not reused for it
    cpu = EmotionClassifier(AwscamBackend(str(tmp_path), gpu=False))
    assert mo.calls[-1]["aux_inputs"]["--precision"] == "FP32" and len(mo.calls) == 2
    assert cpu.backend.xml.endswith("tf_model_FP32_FUSED.xml")
    assert cpu.temperature == temperature
    compare(
        "awscam backend (CPU config, FP32 IR on the doubles)",
        reference,
        [cpu.predict(faces[0])],
        IR_FP32_ATOL * stretch,
    )


# ---------------------------------------------------------------- the rewrites refuse what they cannot prove


def _graph(build):
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        face = tf.compat.v1.placeholder(tf.float32, [None, 4, 4, 1], name="face")
        tf.identity(build(tf, face), name="probabilities")
    return graph.as_graph_def()


def test_a_mirror_that_is_not_a_flip_average_is_refused():
    from convert.errors import ConversionError
    from convert.tf1_graph import remove_mirror

    def mirror_only(tf, face):  # f(mirror(x)) alone, no average with the plain view
        flat = tf.reshape(face, [-1, 4])
        return tf.reshape(tf.matmul(flat, tf.constant(np.eye(4, dtype=np.float32)[::-1].copy())), [-1, 16])

    with pytest.raises(ConversionError, match=r"not \(plain \+ mirrored\) / 2 of one network; path from the output"):
        remove_mirror(_graph(mirror_only), "face", "probabilities")

    def averaged(tf, face):
        flat = tf.reshape(face, [-1, 16])
        mirrored = tf.reshape(
            tf.matmul(tf.reshape(face, [-1, 4]), tf.constant(np.eye(4, dtype=np.float32)[::-1].copy())), [-1, 16]
        )
        return (flat + mirrored) * 0.5

    graph_def, removed = remove_mirror(_graph(averaged), "face", "probabilities")
    out = [n for n in graph_def.node if n.name == "probabilities"][0]
    assert removed and out.input[0].startswith("Reshape") and "MatMul" not in out.input[0]


def test_shape_computing_ops_are_refused_by_name():
    from convert.errors import ConversionError
    from convert.tf1_graph import check_static

    def dynamic_flatten(tf, face):
        return tf.reshape(face, tf.stack([tf.shape(face)[0], 16]))

    with pytest.raises(ConversionError, match=r"Pack.*Shape.*StridedSlice.*compute shapes at run time"):
        check_static(_graph(dynamic_flatten), "face", [1, 4, 4, 1])
