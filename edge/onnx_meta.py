"""The one reader of the fer-edge metadata embedded in ONNX files (Python 3.6, stdlib only).

ONNX files carry their metadata JSON in ``ModelProto.metadata_props`` under
``edge.metadata.ONNX_METADATA_KEY``. This reader walks the protobuf wire format itself, so it
works where the ``onnx`` package is missing (Jetsons, DeepLens) and needs no runtime session. It
also tells a truncated or corrupt file from a good one: every field of the top-level message
must parse and the graph (field 7) must be present.
"""

import os

from edge import metadata as md


class OnnxMetadataError(md.MetadataError):
    """An ONNX file that is unreadable or carries no fer-edge metadata; the message names the file."""


def _varint(data, pos):
    result, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long at byte {}".format(pos))


def _proto_fields(data, start, end):
    """(field number, wire type, value) of a protobuf message; length-delimited values as (start, end)."""
    pos = start
    while pos < end:
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = (pos, pos + size), pos + size
        elif wire == 5:
            value, pos = None, pos + 4
        else:
            raise ValueError("unsupported protobuf wire type {} at byte {}".format(wire, pos))
        if pos > end:
            raise ValueError("field {} runs past the end of the data (truncated file?)".format(field))
        yield field, wire, value


# the wire-format walker, for the other stdlib readers of ONNX files (jetson.onnx_ops)
proto_fields = _proto_fields

GRAPH_FIELD = 7
METADATA_PROPS_FIELD = 14


def onnx_metadata_props(path):
    """metadata_props of an ONNX file as a dict; OnnxMetadataError for a missing, truncated or non-ONNX file.

    ModelProto field 14 is ``repeated StringStringEntryProto metadata_props`` (key = 1, value = 2).
    """
    if not os.path.isfile(path):
        raise OnnxMetadataError("{}: ONNX file not found".format(path))
    with open(path, "rb") as handle:
        data = handle.read()
    props = {}
    has_graph = False
    try:
        for field, wire, value in _proto_fields(data, 0, len(data)):
            if field == GRAPH_FIELD and wire == 2:
                has_graph = True
            if field == METADATA_PROPS_FIELD and wire == 2:
                entry = {}
                for sub, sub_wire, span in _proto_fields(data, value[0], value[1]):
                    if sub in (1, 2) and sub_wire == 2:
                        entry[sub] = data[span[0] : span[1]].decode("utf-8")
                props[entry.get(1, "")] = entry.get(2, "")
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise OnnxMetadataError("{}: not a readable ONNX file ({}; corrupt or truncated?)".format(path, exc)) from exc
    if not has_graph:
        raise OnnxMetadataError("{}: not an ONNX model (no graph in the file; {} bytes)".format(path, len(data)))
    return props


def onnx_model_metadata(path):
    """The fer-edge metadata of an ONNX file: embedded, else in its sidecar (``<file>.fer_edge.json``)."""
    props = onnx_metadata_props(path)
    if md.ONNX_METADATA_KEY in props:
        return md.loads(props[md.ONNX_METADATA_KEY], "{}: metadata_props['{}']".format(path, md.ONNX_METADATA_KEY))
    if os.path.isfile(md.sidecar_path(path)):
        return md.read(md.sidecar_path(path))
    raise OnnxMetadataError(
        "{}: no fer-edge metadata (metadata_props['{}'] or sidecar {}); convert the model "
        "with `fer-edge convert onnx` (classifiers) or `make detector-models` "
        "(face detectors)".format(path, md.ONNX_METADATA_KEY, md.sidecar_path(path))
    )
