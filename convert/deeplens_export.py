"""SavedModel -> AWS DeepLens model artifact: a frozen TF1-style GraphDef and its metadata in a .tar.gz.

The graph: input node ``face`` (Placeholder, float32 [N, H, W, 3], NHWC: the gray face, values 0..255,
repeated in three channels, which the graph averages back to one; the normalisation is inside the
graph), output node ``probabilities`` (Identity, softmax [N, 8] in metadata label order). Variables
are frozen into constants, function calls inlined, constants folded and batch norms folded into the
convolutions by Grappler (constant folding, arithmetic and dependency optimizers; no fused or
layout-changed ops); then the rewrites of ``convert.tf1_graph`` make it readable by TensorFlow 1.4
and the classic (2018-2021) OpenVINO Model Optimizer the DeepLens runs: no in-graph mirror (a
flip-averaged model keeps one view and the metadata's ``model.flip_average: "runtime"`` tells the
awscam backend to run the mirrored face too and average), Flatten as a Reshape to a constant shape,
the 3-channel input, every constant stored with its values; attributes equal to their defaults are
stripped and AddV2 is written as Add, and nothing but the path from ``face`` to ``probabilities`` is
kept (no variables, no training ops, no function library). Checked: every op is one of DeepLens's
documented TensorFlow layers (or a 2-D MatMul), no op computes shapes, every shape is static for a
batch of one.

``<name>.tar.gz`` holds ``<name>.pb`` and ``<name>.pb.fer_edge.json`` (the metadata, layout NHWC,
3 channels); it is what DeepLens imports from S3. The same metadata is also written beside the
tarball as ``<name>.tar.gz.fer_edge.json``. On the device, the DeepLens model optimizer reads the .pb
with ``mo.optimize(name, 48, 48, platform='tf')`` (input [1, 48, 48, 3], as in AWS's TensorFlow sample).

Verification: the .pb is read back from the tarball, imported into a fresh graph and run in a
``tf.compat.v1.Session`` on the views the awscam backend feeds (``deeplens.awscam_backend.device_views``
and ``combine_views``: the same rule as on the device); the result must equal the SavedModel's
probabilities within 1e-5 with the same argmax on every face. tests/test_deeplens_toolchains.py
runs the same artifact in TensorFlow 1.4 (Python 3.6) and through OpenVINO 2021.4's classic Model
Optimizer and Inference Engine (Python 3.7).
"""

import io
import os
import tarfile
import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import numpy.typing as npt

from deeplens.awscam_backend import DEVICE_CHANNELS, FLIP_AVERAGE_KEY, FLIP_BY_RUNTIME, combine_views, device_views
from edge import metadata as md

from . import parity, tf1_graph
from .common import SavedModelSource, final_path, refuse_existing, say, staged_output, stem_of
from .errors import ConversionError

if TYPE_CHECKING:
    from tensorflow.core.framework.graph_pb2 import GraphDef

ATOL = 1e-5
LAYOUT = "NHWC"
GRAPPLER_PASSES = ("pruning", "function", "constfold", "arithmetic", "dependency", "constfold")
# Ops that must not survive in a frozen inference graph.
FORBIDDEN_OPS = frozenset(
    [
        "VarHandleOp",
        "VariableV2",
        "Variable",
        "ReadVariableOp",
        "AssignVariableOp",
        "Assign",
        "PartitionedCall",
        "StatefulPartitionedCall",
        "SaveV2",
        "RestoreV2",
        "NoOp",
    ]
)
# Newer ops with an older twin of the same inputs and attributes (AddV2 appeared in TF 1.15; the
# DeepLens model optimizer and TF 1.x before it know Add).
TF1_OP_RENAMES = {"AddV2": "Add"}


def _grappler(graph_def, output):
    import tensorflow as tf
    from tensorflow.core.protobuf import config_pb2, meta_graph_pb2
    from tensorflow.python.grappler import tf_optimizer

    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
        meta_graph = tf.compat.v1.train.export_meta_graph(graph=graph)
    fetch = meta_graph_pb2.CollectionDef()
    fetch.node_list.value.append(output)
    meta_graph.collection_def["train_op"].CopyFrom(fetch)
    config = config_pb2.ConfigProto()
    rewrite = config.graph_options.rewrite_options
    rewrite.optimizers[:] = list(GRAPPLER_PASSES)
    return tf_optimizer.OptimizeGraph(config, meta_graph)


def strip_default_attrs(graph_def: "GraphDef") -> "GraphDef":
    """Remove attributes whose value is the op's default (TF 1.x readers may not know newer attrs)."""
    from tensorflow.python.framework import op_def_registry

    for node in graph_def.node:
        op_def = op_def_registry.get(node.op)
        if op_def is None:
            continue
        for attr in op_def.attr:
            if attr.HasField("default_value") and attr.name in node.attr and node.attr[attr.name] == attr.default_value:
                del node.attr[attr.name]
    return graph_def


def freeze(source: SavedModelSource) -> "GraphDef":
    """The frozen, folded GraphDef ``face -> probabilities`` of a :class:`SavedModelSource` (as
    TensorFlow 2 writes it: see :func:`deeplens_graph` for what the device needs)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = source.serving_function().get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    graph_def = frozen.graph.as_graph_def()
    graph_def = _grappler(graph_def, source.prob_name)
    graph_def = tf.compat.v1.graph_util.extract_sub_graph(graph_def, [source.prob_name])
    for node in graph_def.node:
        node.op = TF1_OP_RENAMES.get(node.op, node.op)
    return strip_default_attrs(graph_def)


def deeplens_graph(source: SavedModelSource) -> tuple["GraphDef", bool]:
    """(GraphDef, flip averaged by the runtime?) for DeepLens: :func:`freeze`, then the rewrites of
    ``convert.tf1_graph`` (no mirror, constant reshapes, a 3-channel input, constants re-encoded),
    in topological order, checked static (ConversionError naming what is not)."""
    import tensorflow as tf

    extract = tf.compat.v1.graph_util.extract_sub_graph
    face, prob = source.face_name, source.prob_name
    graph_def = freeze(source)
    graph_def, mirrored = tf1_graph.remove_mirror(graph_def, face, prob)
    graph_def = extract(graph_def, [prob])
    graph_def = extract(tf1_graph.constant_reshapes(graph_def, face), [prob])
    graph_def = tf1_graph.three_channel_input(graph_def, face, DEVICE_CHANNELS)
    graph_def = tf1_graph.topological(tf1_graph.reencode_constants(graph_def))
    graph_def = strip_default_attrs(graph_def)
    check_graph(graph_def, source)
    tf1_graph.check_static(graph_def, face, [1, source.height, source.width, DEVICE_CHANNELS])
    return graph_def, mirrored


def deeplens_metadata(meta: dict[str, Any], mirrored: bool) -> dict[str, Any]:
    """The artifact's metadata: NHWC, the device's 3 channels, and who flip-averages."""
    meta = md.with_layout(meta, LAYOUT)
    meta["input"]["channels"] = DEVICE_CHANNELS
    if mirrored:
        meta.setdefault("model", {})[FLIP_AVERAGE_KEY] = FLIP_BY_RUNTIME
    return meta


def check_graph(graph_def: "GraphDef", source: SavedModelSource) -> None:
    """Named input/output nodes, one placeholder, nothing left of variables or function calls."""
    nodes = {n.name: n for n in graph_def.node}
    placeholders = [n.name for n in graph_def.node if n.op == "Placeholder"]
    if placeholders != [source.face_name]:
        raise ConversionError(
            "frozen graph placeholders are {} (expected only '{}')".format(placeholders, source.face_name)
        )
    out = nodes.get(source.prob_name)
    if out is None or out.op != "Identity":
        raise ConversionError("frozen graph has no Identity node '{}'".format(source.prob_name))
    bad = sorted({n.op for n in graph_def.node if n.op in FORBIDDEN_OPS})
    if bad or len(graph_def.library.function):
        raise ConversionError(
            "frozen graph still holds {} and {} library functions".format(
                ", ".join(bad) or "no variable/call ops", len(graph_def.library.function)
            )
        )


def frozen_predictor(pb_bytes: bytes, input_name: str, output_name: str) -> Callable[[np.ndarray], np.ndarray]:
    """predict(x NHWC float32, the graph's channels) -> its output, run in a TF1 Session."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(pb_bytes)
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    session = tf.compat.v1.Session(graph=graph)
    feed, fetch = input_name + ":0", output_name + ":0"

    def predict(x):
        return np.concatenate([session.run(fetch, {feed: x[i : i + 256]}) for i in range(0, len(x), 256)])

    return predict


def device_predictor(pb_bytes: bytes, meta: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    """predict(preprocessed faces, 1 channel) -> probabilities as the awscam backend computes them:
    the graph on each of ``device_views`` (3 channels; the mirror image too when the metadata says
    the runtime flip-averages), combined by ``combine_views``."""
    run = frozen_predictor(
        pb_bytes, meta["input"].get("name", "face"), meta.get("output", {}).get("name", "probabilities")
    )

    def predict(x):
        return combine_views([run(view) for view in device_views(x, meta)])

    return predict


def read_pb(tar_path: str, stem: str) -> tuple[bytes, dict[str, Any]]:
    """The .pb bytes and metadata packed in a DeepLens artifact."""
    with tarfile.open(tar_path, "r:gz") as tar:
        pb = _member_bytes(tar, tar_path, stem + ".pb")
        meta = md.loads(
            _member_bytes(tar, tar_path, md.sidecar_path(stem + ".pb")).decode("utf-8"),
            "{}:{}".format(tar_path, md.sidecar_path(stem + ".pb")),
        )
    return pb, meta


def _member_bytes(tar: tarfile.TarFile, tar_path: str, name: str) -> bytes:
    """The bytes of the archive member ``name`` (KeyError when absent; ConversionError when it is
    not a regular file, e.g. a folder)."""
    handle = tar.extractfile(name)
    if handle is None:
        raise ConversionError("{}: {} is not a regular file in the archive".format(tar_path, name))
    return handle.read()


def _add_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def export_deeplens(
    savedmodel_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    faces: npt.ArrayLike | None = None,
    data: str | os.PathLike[str] | None = None,
    force: bool = False,
    name: str = "model",
    limit: int = parity.DEFAULT_LIMIT,
    log: Callable[[str], None] | None = None,
) -> str:
    """SavedModel -> ``out_dir/<name>.tar.gz`` (frozen graph + metadata); returns the tarball path."""
    stem = stem_of(name)
    refuse_existing(out_dir, force)
    check_faces, described = parity.parity_faces(faces, data, limit)
    source = SavedModelSource(savedmodel_dir)
    graph_def, mirrored = deeplens_graph(source)
    meta = deeplens_metadata(source.meta, mirrored)
    ops = sorted({n.op for n in graph_def.node})
    say(
        log,
        "frozen graph: {} nodes, ops: {}; input [N,{},{},{}]{}".format(
            len(graph_def.node),
            " ".join(ops),
            source.height,
            source.width,
            DEVICE_CHANNELS,
            "; flip averaging left to the runtime (mirror removed from the graph)" if mirrored else "",
        ),
    )
    with staged_output(out_dir, force) as stage:
        tar_path = os.path.join(stage, stem + ".tar.gz")
        with tarfile.open(tar_path, "w:gz") as tar:
            _add_bytes(tar, stem + ".pb", graph_def.SerializeToString())
            _add_bytes(tar, md.sidecar_path(stem + ".pb"), (md.dumps(meta) + "\n").encode("utf-8"))
        md.write(meta, md.sidecar_path(tar_path))
        pb, packed_meta = read_pb(tar_path, stem)
        if packed_meta != meta:
            raise ConversionError("{}: packed metadata differs from the SavedModel's".format(tar_path))
        say(log, "checking the frozen graph (tf.compat.v1.Session) on {}".format(described))
        parity.check("DeepLens frozen graph", source, device_predictor(pb, meta), check_faces, LAYOUT, ATOL, log=log)
        result = final_path(stage, out_dir, tar_path)
    return result
