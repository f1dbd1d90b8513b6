"""The operators and opset of an ONNX file checked against TensorRT 8.2's ONNX parser, before
TensorRT is loaded (Python 3.6, standard library: reads the protobuf wire format itself, like
``edge.onnx_meta``, so it runs where the onnx package is missing).

A model TensorRT 8.2 cannot parse (e.g. an opset-16 export with ``GridSample``) is refused with a
message naming the file, the operators and their nodes, and the opset, instead of a parser log.
"""

from typing import Dict, List

from edge.onnx_meta import GRAPH_FIELD, OnnxMetadataError, proto_fields
from jetson import trt_ops

OPSET_IMPORT_FIELD = 8  # ModelProto.opset_import: OperatorSetIdProto (domain = 1, version = 2)
NODE_FIELD = 1  # GraphProto.node: NodeProto (name = 3, op_type = 4, attribute = 5, domain = 7)
ATTRIBUTE_FIELD = 5
SUBGRAPH_FIELDS = (6, 11)  # AttributeProto.g, AttributeProto.graphs (If/Loop/Scan bodies)
DEFAULT_DOMAINS = ("", "ai.onnx")


class OnnxNode(object):
    """One node of the graph: what ``trt_ops.unsupported_nodes`` reads."""

    __slots__ = ("op_type", "domain", "name")

    def __init__(self, op_type, domain, name):
        self.op_type, self.domain, self.name = op_type, domain, name


def _text(data, span):
    return data[span[0] : span[1]].decode("utf-8")


def _graph_nodes(data, start, end):
    for field, wire, value in proto_fields(data, start, end):
        if field != NODE_FIELD or wire != 2:
            continue
        found = {3: "", 4: "", 7: ""}
        subgraphs = []
        for sub, sub_wire, span in proto_fields(data, value[0], value[1]):
            if sub in found and sub_wire == 2:
                found[sub] = _text(data, span)
            elif sub == ATTRIBUTE_FIELD and sub_wire == 2:
                for attr, attr_wire, graph in proto_fields(data, span[0], span[1]):
                    if attr in SUBGRAPH_FIELDS and attr_wire == 2:
                        subgraphs.append(graph)
        yield OnnxNode(found[4], found[7], found[3])
        for graph in subgraphs:
            for node in _graph_nodes(data, graph[0], graph[1]):
                yield node


def read_operators(path):
    """(opset of the default domain, [OnnxNode] of the graph and its subgraphs) of an ONNX file;
    OnnxMetadataError for a missing or unreadable file."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except (IOError, OSError) as exc:
        raise OnnxMetadataError("{}: cannot read the ONNX file ({})".format(path, exc)) from exc
    opset, nodes = 0, []
    try:
        for field, wire, value in proto_fields(data, 0, len(data)):
            if field == OPSET_IMPORT_FIELD and wire == 2:
                domain, version = "", 0  # OperatorSetIdProto: domain (1), version (2)
                for sub, sub_wire, sub_value in proto_fields(data, value[0], value[1]):
                    if sub == 1 and sub_wire == 2:
                        domain = _text(data, sub_value)
                    elif sub == 2 and sub_wire == 0:
                        version = int(sub_value)
                if domain in DEFAULT_DOMAINS:
                    opset = max(opset, version)
            elif field == GRAPH_FIELD and wire == 2:
                nodes.extend(_graph_nodes(data, value[0], value[1]))
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise OnnxMetadataError("{}: not a readable ONNX file ({}; corrupt or truncated?)".format(path, exc)) from exc
    return opset, nodes


def tensorrt_problems(path):
    """What keeps TensorRT 8.2's ONNX parser from taking ``path``: a list of sentences (empty: none)."""
    opset, nodes = read_operators(path)
    problems = []
    if opset > trt_ops.MAX_OPSET:
        problems.append(
            "opset {} (TensorRT {} parses up to {})".format(opset, trt_ops.TENSORRT_VERSION, trt_ops.MAX_OPSET)
        )
    by_op: Dict[str, List[str]] = {}
    for op, node in trt_ops.unsupported_nodes(nodes):
        by_op.setdefault(op, []).append(node or "(unnamed)")
    for op in sorted(by_op):
        names = by_op[op]
        problems.append(
            "operator {} (node{} {})".format(
                op, "s" if len(names) > 1 else "", ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            )
        )
    return problems


def check_for_tensorrt(path, error=ValueError):
    """Raise ``error`` naming the file and every operator (and the opset) TensorRT 8.2 cannot parse."""
    problems = tensorrt_problems(path)
    if problems:
        raise error(
            "{}: TensorRT {}'s ONNX parser cannot take this model: {}; export it with opset {} and "
            "operators from its list (`fer-edge convert onnx`; list: {})".format(
                path, trt_ops.TENSORRT_VERSION, "; ".join(problems), trt_ops.MAX_OPSET, trt_ops.SOURCE
            )
        )
