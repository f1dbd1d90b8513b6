"""SavedModel -> ONNX, checked for TensorRT 8.2 and against the SavedModel with ONNX Runtime.

The model: opset 13 by default (TensorRT 8.2 parses up to 13), input ``face`` float32
[N, 1, H, W] (NCHW via tf2onnx's ``inputs_as_nchw``; gray values 0..255, normalisation inside the
graph), dynamic batch ``N``, output ``probabilities`` [N, 8]. tf2onnx folds constants and batch
norms and removes redundant transposes; onnxslim (or onnxsim) simplifies further when installed.
The model metadata (layout NCHW) is embedded as ``metadata_props[edge.metadata.ONNX_METADATA_KEY]``.

Checks on every conversion: ``onnx.checker.check_model`` (full), opset, input/output names and
shapes, every operator in the TensorRT 8.2 ONNX parser's list (:mod:`convert.trt_ops`), and ONNX
Runtime against the SavedModel on real faces (max |diff| of probabilities <= 1e-4, same argmax).
"""

import os
from typing import TYPE_CHECKING, Any, Callable, Container, Iterator

import numpy as np
import numpy.typing as npt

from edge import metadata as md

from . import parity, trt_ops
from .common import SavedModelSource, final_path, refuse_existing, say, staged_output, stem_of
from .errors import ConversionError

if TYPE_CHECKING:
    import onnx

DEFAULT_OPSET = 13
ATOL = 1e-4
BATCH_DIM = "N"
LAYOUT = "NCHW"


def to_onnx(source: SavedModelSource, opset: int = DEFAULT_OPSET) -> "onnx.ModelProto":
    """The ONNX ModelProto of a :class:`SavedModelSource` (not yet checked)."""
    import tf2onnx

    serve = source.serving_function()
    model, _ = tf2onnx.convert.from_function(
        serve, input_signature=[source.input_spec], opset=opset, inputs_as_nchw=[source.face_name + ":0"]
    )
    return model


def simplify(model: "onnx.ModelProto", log: Callable[[str], None] | None = None) -> "onnx.ModelProto":
    """Simplify with onnxslim or onnxsim when one is installed (optional); else unchanged."""
    try:
        import onnxslim
    except ImportError:
        onnxslim = None
    if onnxslim is not None:
        try:
            return onnxslim.slim(model)
        except Exception as exc:  # an optional optimizer must not break the conversion
            say(log, "onnxslim failed ({}); keeping tf2onnx's graph".format(exc))
            return model
    try:
        import onnxsim
    except ImportError:
        return model
    try:
        simplified, ok = onnxsim.simplify(model)
        return simplified if ok else model
    except Exception as exc:
        say(log, "onnxsim failed ({}); keeping tf2onnx's graph".format(exc))
        return model


def name_batch_dim(model: "onnx.ModelProto", name: str = BATCH_DIM) -> "onnx.ModelProto":
    """Give the dynamic batch dimension of every graph input and output one name."""
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_param = name
    return model


def embed_metadata(model: "onnx.ModelProto", meta: dict[str, Any], layout: str | None = LAYOUT) -> "onnx.ModelProto":
    """Store ``meta`` (with its input layout set to ``layout``; None keeps it) in
    ``model.metadata_props`` under ONNX_METADATA_KEY. Read back with ``edge.onnx_meta``."""
    keep = [p for p in model.metadata_props if p.key != md.ONNX_METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    entry = model.metadata_props.add()
    entry.key = md.ONNX_METADATA_KEY
    entry.value = md.dumps(md.with_layout(meta, layout) if layout else meta)
    return model


def all_nodes(graph: "onnx.GraphProto") -> Iterator["onnx.NodeProto"]:
    """Every node of ``graph`` and of its subgraphs (If/Loop/Scan bodies)."""
    import onnx

    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                for sub in all_nodes(attr.g):
                    yield sub
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    for sub in all_nodes(g):
                        yield sub


def check_tensorrt_ops(model: "onnx.ModelProto", supported: Container[str] | None = None) -> None:
    """ConversionError naming every operator (and its nodes) TensorRT 8.2's ONNX parser lacks."""
    bad = trt_ops.unsupported_nodes(all_nodes(model.graph), supported)
    if not bad:
        return
    by_op: dict[str, list[str]] = {}  # operator -> names of its nodes
    for op, node in bad:
        by_op.setdefault(op, []).append(node or "(unnamed)")
    details = "; ".join(
        "{} (node{} {})".format(
            op, "s" if len(nodes) > 1 else "", ", ".join(nodes[:5]) + (", ..." if len(nodes) > 5 else "")
        )
        for op, nodes in sorted(by_op.items())
    )
    raise ConversionError(
        "the ONNX model uses operators that TensorRT {}'s ONNX parser does not support: {} (list: {})".format(
            trt_ops.TENSORRT_VERSION, details, trt_ops.SOURCE
        )
    )


def _dims(value):
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def check_structure(model: "onnx.ModelProto", meta: dict[str, Any], opset: int) -> None:
    """onnx.checker (full), opset, one input [N,C,H,W] named like the metadata, one output [N,classes]."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ConversionError("the ONNX model does not pass onnx.checker: {}".format(exc)) from exc
    used = max([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] or [0])
    if used > opset:
        raise ConversionError("the ONNX model imports opset {} (asked for at most {})".format(used, opset))
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    inp = meta["input"]
    want_in = [BATCH_DIM, inp["channels"], inp["height"], inp["width"]]
    if len(inputs) != 1 or inputs[0].name != inp.get("name", "face") or _dims(inputs[0]) != want_in:
        raise ConversionError(
            "ONNX input is {} (expected one input '{}' {})".format(
                [(i.name, _dims(i)) for i in inputs], inp.get("name", "face"), want_in
            )
        )
    out_name = meta.get("output", {}).get("name", "probabilities")
    want_out = [BATCH_DIM, len(meta["labels"])]
    outs = list(model.graph.output)
    if len(outs) != 1 or outs[0].name != out_name or _dims(outs[0]) != want_out:
        raise ConversionError(
            "ONNX output is {} (expected one output '{}' {})".format(
                [(o.name, _dims(o)) for o in outs], out_name, want_out
            )
        )


def write_onnx(
    source: SavedModelSource,
    path: str,
    opset: int = DEFAULT_OPSET,
    log: Callable[[str], None] | None = None,
    supported_ops: Container[str] | None = None,
) -> str:
    """Convert, simplify, embed metadata, check structure and operators, save to ``path``."""
    import onnx

    model = simplify(to_onnx(source, opset), log)
    name_batch_dim(model)
    embed_metadata(model, source.meta)
    check_structure(model, md.with_layout(source.meta, LAYOUT), opset)
    check_tensorrt_ops(model, supported_ops)
    onnx.save(model, path)
    ops = sorted({n.op_type for n in model.graph.node})
    say(log, "ONNX opset {}, {} nodes, operators: {}".format(opset, len(model.graph.node), " ".join(ops)))
    return path


def onnxruntime_predictor(path: str) -> Callable[[np.ndarray], np.ndarray]:
    """predict(x NCHW float32) -> probabilities, with ONNX Runtime on CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def predict(x):
        return np.concatenate([session.run(None, {name: x[i : i + 256]})[0] for i in range(0, len(x), 256)])

    return predict


def export_onnx(
    savedmodel_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    faces: npt.ArrayLike | None = None,
    data: str | os.PathLike[str] | None = None,
    opset: int | None = None,
    force: bool = False,
    name: str = "model",
    limit: int = parity.DEFAULT_LIMIT,
    log: Callable[[str], None] | None = None,
    supported_ops: Container[str] | None = None,
) -> str:
    """SavedModel -> ``out_dir/<name>.onnx`` (checked, verified with ONNX Runtime); returns its path.

    ``faces``/``data``/``limit``: the real faces of the parity check (see :mod:`convert.parity`);
    ``opset``: default 13, the highest TensorRT 8.2 parses; ``supported_ops``: override of the
    TensorRT operator list (tests).
    """
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if opset > trt_ops.MAX_OPSET:
        say(
            log,
            "warning: opset {} > {}: TensorRT {} cannot parse this model".format(
                opset, trt_ops.MAX_OPSET, trt_ops.TENSORRT_VERSION
            ),
        )
    stem = stem_of(name)
    refuse_existing(out_dir, force)
    check_faces, described = parity.parity_faces(faces, data, limit)
    source = SavedModelSource(savedmodel_dir)
    with staged_output(out_dir, force) as stage:
        path = write_onnx(source, os.path.join(stage, stem + ".onnx"), opset, log, supported_ops)
        say(log, "checking with ONNX Runtime on {}".format(described))
        parity.check("ONNX (onnxruntime)", source, onnxruntime_predictor(path), check_faces, LAYOUT, ATOL, log=log)
        result = final_path(stage, out_dir, path)
    return result
