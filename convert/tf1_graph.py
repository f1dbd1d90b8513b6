"""GraphDef rewrites that make a frozen TensorFlow 2 graph readable by old TF1-era toolchains.

The DeepLens model artifact (``convert.deeplens_export``) is read on the device by a model optimizer
of the TensorFlow 1.4 era (OpenVINO's classic Model Optimizer, whose GPU plugin and AWS's list of
supported TensorFlow layers know only static shapes). A graph frozen by TensorFlow 2 needs four
rewrites before such tools read it:

* :func:`remove_mirror`: a model exported with flip averaging (``train.models.with_flip_averaging``:
  ``(f(x) + f(mirror(x))) / 2`` with the mirror as a MatMul by an anti-diagonal matrix over a 3-D
  tensor, from Keras' Tensordot with Shape/GatherV2/Prod/Pack/ConcatV2) becomes the single view
  ``f(x)``; the runtime then averages ``f(x)`` and ``f(mirrored x)`` itself (the metadata says so).
* :func:`constant_reshapes`: a Reshape whose target shape is computed at run time (Keras' Flatten:
  Shape -> StridedSlice -> Pack) gets a constant target ``[-1, d1, ...]`` from static shape inference.
* :func:`three_channel_input`: the gray input ``[N, H, W, 1]`` becomes ``[N, H, W, 3]`` followed by a
  Mean over the channels, because DeepLens's optimizer and ``doInference`` take H x W x 3 images (as in
  AWS's TensorFlow sample); a gray face repeated in the three channels reaches the network unchanged.
* :func:`reencode_constants`: every numeric constant stored with its bytes in ``tensor_content``.
  TensorFlow 2 writes zero-valued constants with no stored value at all; TensorFlow 1.4's reader
  (``MakeNdarray``: "cannot reshape array of size 0 into shape ()") and OpenVINO 2021.4's classic
  Model Optimizer fail on those.

:func:`check_static` then proves the result: every op in :data:`DEEPLENS_TF_OPS`, no op that
computes shapes, and every tensor's shape known for a batch of one.
"""

from typing import TYPE_CHECKING, Sequence

import numpy as np
import numpy.typing as npt

from .errors import ConversionError

if TYPE_CHECKING:
    from tensorflow.core.framework.graph_pb2 import GraphDef
    from tensorflow.core.framework.tensor_pb2 import TensorProto

# AWS DeepLens's documented TensorFlow layers ("Supporting TensorFlow Layers", DeepLens developer
# guide) plus MatMul on 2-D tensors (Dense layers; the classic Model Optimizer converts it to its
# fully-connected layer: checked with 2021.4 in tests/test_deeplens_toolchains.py, not with the device's build).
DEEPLENS_TF_OPS = frozenset(
    [
        "Add",
        "AvgPool",
        "BatchToSpaceND",
        "BiasAdd",
        "Const",
        "Conv2D",
        "Conv2DBackpropInput",
        "Identity",
        "Maximum",
        "MaxPool",
        "Mean",
        "Mul",
        "Neg",
        "Pad",
        "Placeholder",
        "Prod",
        "RandomUniform",
        "Range",
        "Relu",
        "Reshape",
        "Rsqrt",
        "Shape",
        "Softmax",
        "SpaceToBatchND",
        "Square",
        "Squeeze",
        "StopGradient",
        "Sub",
        "Sum",
        "Tile",
        "MatMul",
    ]
)
# Ops that compute shapes at run time: none may remain (the old GPU plugin needs static shapes).
SHAPE_OPS = frozenset(
    [
        "Shape",
        "ShapeN",
        "Size",
        "Rank",
        "StridedSlice",
        "Pack",
        "GatherV2",
        "Gather",
        "ConcatV2",
        "Concat",
        "Prod",
        "Fill",
        "Range",
        "Slice",
    ]
)


def _name(ref):
    """Node name of an input reference (``name``, ``name:1`` or ``^name``)."""
    return ref.lstrip("^").split(":")[0]


def _data_inputs(node):
    return [_name(ref) for ref in node.input if not ref.startswith("^")]


def _nodes(graph_def):
    return dict((n.name, n) for n in graph_def.node)


def _const_value(node):
    from tensorflow.python.framework import tensor_util

    return tensor_util.MakeNdarray(node.attr["value"].tensor)


def _consumers(graph_def):
    out: dict[str, list[str]] = {}  # node name -> the nodes reading its outputs
    for node in graph_def.node:
        for name in _data_inputs(node):
            out.setdefault(name, []).append(node.name)
    return out


def _downstream(graph_def, starts):
    consumers = _consumers(graph_def)
    seen, todo = set(), list(starts)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(consumers.get(name, ()))
    return seen


def _upstream(nodes, start):
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        todo.extend(_data_inputs(nodes[name]))
    return seen


def mirror_ops(graph_def: "GraphDef") -> list[str]:
    """Names of the MatMul nodes that multiply by a constant anti-diagonal (mirror) matrix."""
    nodes = _nodes(graph_def)
    found = []
    for node in graph_def.node:
        if node.op not in ("MatMul", "BatchMatMul", "BatchMatMulV2"):
            continue
        for name in _data_inputs(node):
            other = nodes.get(name)
            if other is None or other.op != "Const":
                continue
            value = _const_value(other)
            if (
                value.ndim == 2
                and value.shape[0] == value.shape[1] > 1
                and np.array_equal(value, np.eye(value.shape[0], dtype=value.dtype)[::-1])
            ):
                found.append(node.name)
    return found


def remove_mirror(graph_def: "GraphDef", face: str, output: str) -> tuple["GraphDef", bool]:
    """``graph_def`` without the flip average, and whether there was one.

    The output ``(f(face) + f(mirror(face))) * 0.5`` is rewired to ``f(face)``; the mirror branch is
    left unreachable (prune it with ``extract_sub_graph``). ConversionError when a mirror exists but
    the output is not exactly that average of a plain and a mirrored branch."""
    mirrors = mirror_ops(graph_def)
    if not mirrors:
        return graph_def, False
    nodes = _nodes(graph_def)
    dirty = _downstream(graph_def, mirrors)
    out = nodes[output]
    if out.op != "Identity" or output not in dirty:
        raise ConversionError(
            "the graph mirrors its input ({}) but the output '{}' is not an Identity of the flip average".format(
                ", ".join(mirrors), output
            )
        )
    name, scale, path = _data_inputs(out)[0], 1.0, []
    while True:
        node = nodes[name]
        path.append("{} ({})".format(node.name, node.op))
        ins = _data_inputs(node)
        consts = [i for i in ins if nodes[i].op == "Const"]
        others = [i for i in ins if nodes[i].op != "Const"]
        if (
            node.op in ("Mul", "RealDiv")
            and len(consts) == 1
            and len(others) == 1
            and _const_value(nodes[consts[0]]).size == 1
        ):
            value = float(_const_value(nodes[consts[0]]).reshape(()))
            if node.op == "RealDiv" and ins[1] != consts[0]:
                break
            scale *= value if node.op == "Mul" else 1.0 / value
            name = others[0]
            continue
        if node.op in ("Add", "AddV2", "AddN") and len(ins) == 2 and len(others) == 2:
            plain = [i for i in ins if i not in dirty]
            mirrored = [i for i in ins if i in dirty]
            if len(plain) == 1 and len(mirrored) == 1 and face in _upstream(nodes, plain[0]):
                if abs(scale - 0.5) > 1e-7:
                    raise ConversionError(
                        "the flip average scales the sum by {} (expected 0.5): {}".format(scale, " <- ".join(path))
                    )
                out.input[0] = [ref for ref in node.input if _name(ref) == plain[0]][0]
                return graph_def, True
        break
    raise ConversionError(
        "the graph mirrors its input ({}) but its output is not (plain + mirrored) / 2 "
        "of one network; path from the output: {}".format(", ".join(mirrors), " <- ".join(path))
    )


def _import(graph_def, face, shape):
    """A tf.Graph of ``graph_def`` with the placeholder ``face`` of static ``shape`` (None: as stored)."""
    import tensorflow as tf

    graph_def = _copy(graph_def)
    if shape is not None:
        ph = _nodes(graph_def)[face]
        ph.attr["shape"].shape.CopyFrom(tf.TensorShape(shape).as_proto())
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    return graph


def _copy(graph_def):
    import tensorflow as tf

    out = tf.compat.v1.GraphDef()
    out.CopyFrom(graph_def)
    return out


def _const_node(graph_def, name, array):
    """Append a Const node holding ``array`` (bytes in tensor_content)."""
    node = graph_def.node.add()
    node.name = name
    node.op = "Const"
    node.attr["value"].tensor.CopyFrom(tensor_proto(array))
    node.attr["dtype"].type = node.attr["value"].tensor.dtype
    return node


def constant_reshapes(graph_def: "GraphDef", face: str) -> "GraphDef":
    """Every Reshape whose target shape is computed gets the constant ``[-1, d1, ...]`` instead
    (static shape inference); ConversionError naming the node when a dimension is unknown."""
    graph = _import(graph_def, face, None)
    consts = set(n.name for n in graph_def.node if n.op == "Const")
    for node in list(graph_def.node):
        if node.op != "Reshape" or _data_inputs(node)[1] in consts:
            continue
        dims = graph.get_tensor_by_name(node.name + ":0").shape.as_list()
        if dims is None or any(d is None for d in dims[1:]):
            raise ConversionError(
                "Reshape '{}' has output shape {}: only the batch may be unknown for a constant target shape".format(
                    node.name, dims
                )
            )
        target = _const_node(graph_def, node.name + "/static_shape", np.array([-1] + dims[1:], np.int32))
        node.input[1] = target.name
    return graph_def


def three_channel_input(graph_def: "GraphDef", face: str, channels: int = 3) -> "GraphDef":
    """The placeholder ``face`` [N, H, W, 1] becomes [N, H, W, channels] followed by ``Mean`` over the
    channels (kept as [N, H, W, 1]) that feeds what the placeholder fed."""
    import tensorflow as tf

    nodes = _nodes(graph_def)
    ph = nodes[face]
    dims = tf.TensorShape(ph.attr["shape"].shape).as_list()
    if dims is None or len(dims) != 4 or dims[3] != 1:
        raise ConversionError("placeholder '{}' has shape {}; expected [N, H, W, 1]".format(face, dims))
    ph.attr["shape"].shape.CopyFrom(tf.TensorShape(dims[:3] + [channels]).as_proto())
    gray = face + "/gray"
    for node in graph_def.node:
        for i, ref in enumerate(node.input):
            if _name(ref) == face:
                node.input[i] = ref.replace(face, gray, 1)
    axis = _const_node(graph_def, gray + "/axis", np.array([3], np.int32))
    mean = graph_def.node.add()
    mean.name, mean.op = gray, "Mean"
    mean.input.extend([face, axis.name])
    mean.attr["T"].type = ph.attr["dtype"].type
    mean.attr["Tidx"].type = axis.attr["dtype"].type
    mean.attr["keep_dims"].b = True
    return graph_def


def tensor_proto(array: npt.ArrayLike) -> "TensorProto":
    """A TensorProto of a numeric numpy array with every value stored (little-endian tensor_content)."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2
    from tensorflow.python.framework import dtypes

    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        raise ConversionError("cannot store a constant of dtype {}".format(array.dtype))
    proto = tensor_pb2.TensorProto(dtype=dtypes.as_dtype(array.dtype).as_datatype_enum)
    proto.tensor_shape.CopyFrom(
        tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in array.shape])
    )
    proto.tensor_content = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return proto


def reencode_constants(graph_def: "GraphDef") -> "GraphDef":
    """Every Const re-encoded by :func:`tensor_proto` (same values, every value stored)."""
    for node in graph_def.node:
        if node.op == "Const":
            value = _const_value(node)
            node.attr["value"].tensor.CopyFrom(tensor_proto(value))
    return graph_def


def topological(graph_def: "GraphDef") -> "GraphDef":
    """The nodes ordered so that every node comes after its inputs (old importers read them in order)."""
    nodes = _nodes(graph_def)
    order, state = [], {}
    for root in [n.name for n in graph_def.node]:
        stack = [(root, False)]
        while stack:
            name, done = stack.pop()
            if done:
                state[name] = 2
                order.append(nodes[name])
                continue
            if state.get(name):
                continue
            state[name] = 1
            stack.append((name, True))
            for dep in reversed([_name(ref) for ref in nodes[name].input]):
                if dep in nodes and not state.get(dep):
                    stack.append((dep, False))
    out = _copy(graph_def)
    del out.node[:]
    out.node.extend(order)
    return out


def check_static(graph_def: "GraphDef", face: str, shape: Sequence[int | None]) -> list[str]:
    """ConversionError unless every op is in :data:`DEEPLENS_TF_OPS`, none computes shapes, every
    MatMul is 2-D and every tensor's shape is known with the input ``face`` of ``shape``."""
    ops = set(n.op for n in graph_def.node)
    outside = sorted(ops - DEEPLENS_TF_OPS)
    dynamic = sorted(ops & SHAPE_OPS)
    if outside or dynamic:
        raise ConversionError(
            "frozen graph ops {} are outside DeepLens's TensorFlow layers, {} compute shapes at run time".format(
                outside or "none", dynamic or "none"
            )
        )
    graph = _import(graph_def, face, shape)
    for op in graph.get_operations():
        for tensor in op.outputs:
            if not tensor.shape.is_fully_defined():
                raise ConversionError(
                    "tensor '{}' ({}) has shape {} for an input {}: not static".format(
                        tensor.name, op.type, tensor.shape, shape
                    )
                )
        if op.type == "MatMul" and any(t.shape.ndims != 2 for t in op.inputs):
            raise ConversionError(
                "MatMul '{}' multiplies {}: only 2-D MatMul is allowed".format(
                    op.name, [t.shape.as_list() for t in op.inputs]
                )
            )
    return sorted(ops)
