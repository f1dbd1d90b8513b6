"""Model metadata: what every artifact carries so that agents preprocess as training did.

The metadata is one JSON object (format documented in docs/models/export.md, "Model metadata"). It is
written by ``train.export`` and copied into every converted artifact: embedded where the format
allows (ONNX ``metadata_props`` key ``fer_edge``), otherwise in a sidecar file.

Python 3.6 compatible: device code reads it.
"""

import copy
import json
import os

from edge.files import write_atomic
from edge.labels import EMOTIONS

FORMAT_VERSION = 1

# File name of the metadata inside a SavedModel / model directory, and suffix of sidecars.
METADATA_FILENAME = "fer_edge.json"
SIDECAR_SUFFIX = ".fer_edge.json"
# Key under which ONNX models embed the metadata JSON in metadata_props.
ONNX_METADATA_KEY = "fer_edge"

LAYOUTS = ("NHWC", "NCHW")

# The two kinds of model that share the formats, the backends and this metadata.
CLASSIFIER = "emotion_classifier"
FACE_DETECTOR = "face_detector"
KINDS = (CLASSIFIER, FACE_DETECTOR)
KIND_NAMES = {CLASSIFIER: "an emotion classifier", FACE_DETECTOR: "a face detector"}
KIND_HINTS = {
    CLASSIFIER: "give it as the model (--model / key 'model')",
    FACE_DETECTOR: "give it as the detector model (--detector-model / key 'detector_model')",
}


class MetadataError(ValueError):
    """Raised when model metadata is missing or malformed; the message names file and field."""


def default_metadata(height=48, width=48, layout="NHWC", scale=1.0 / 127.5, offset=-1.0):
    """Metadata for a model taking gray faces of ``height`` x ``width``, normalised in-model."""
    return {
        "format_version": FORMAT_VERSION,
        "labels": list(EMOTIONS),
        "input": {
            "name": "face",
            "height": int(height),
            "width": int(width),
            "channels": 1,
            "layout": layout,
            "dtype": "float32",
            "color": "gray",
            "value_range": [0.0, 255.0],
            "resize": "area-down-linear-up",
        },
        "normalization": {
            # Applied inside the model graph: x * scale + offset. Agents must not apply it
            # again; ``in_model: false`` would tell them to apply it before inference.
            "in_model": True,
            "scale": float(scale),
            "offset": float(offset),
        },
        "output": {"name": "probabilities", "kind": "softmax"},
        "model": {},
    }


def _require(mapping, key, where, kind=None):
    if not isinstance(mapping, dict) or key not in mapping:
        raise MetadataError("{}: missing field '{}'".format(where, key))
    value = mapping[key]
    if kind is not None and not isinstance(value, kind):
        raise MetadataError(
            "{}: field '{}' has type {}, expected {}".format(
                where, key, type(value).__name__, getattr(kind, "__name__", kind)
            )
        )
    return value


def validate(meta, source="metadata"):
    """Check ``meta`` and return it; raise MetadataError naming ``source`` and the field."""
    if not isinstance(meta, dict):
        raise MetadataError("{}: expected a JSON object".format(source))
    version = _require(meta, "format_version", source, int)
    if version > FORMAT_VERSION:
        raise MetadataError(
            "{}: format_version {} is newer than this code understands ({})".format(source, version, FORMAT_VERSION)
        )
    labels = _require(meta, "labels", source, list)
    if not labels or not all(isinstance(x, str) for x in labels):
        raise MetadataError("{}: field 'labels' must be a non-empty list of strings".format(source))
    inp = _require(meta, "input", source, dict)
    where = source + ": input"
    for key in ("height", "width", "channels"):
        value = _require(inp, key, where, int)
        if value <= 0:
            raise MetadataError("{}: field '{}' must be positive, got {}".format(where, key, value))
    if _require(inp, "layout", where, str) not in LAYOUTS:
        raise MetadataError("{}: field 'layout' must be one of {}, got {!r}".format(where, LAYOUTS, inp["layout"]))
    norm = _require(meta, "normalization", source, dict)
    _require(norm, "in_model", source + ": normalization", bool)
    for key in ("scale", "offset"):
        _require(norm, key, source + ": normalization", (int, float))
    kind = meta.get("kind", CLASSIFIER)
    if kind not in KINDS:
        raise MetadataError("{}: field 'kind' must be one of {}, got {!r}".format(source, ", ".join(KINDS), kind))
    if kind == FACE_DETECTOR:
        _validate_detector(_require(meta, "detector", source, dict), source + ": detector")
    return meta


def _validate_detector(det, where):
    """The detector section: SSD anchors, box decoding and the box -> classifier crop mapping."""
    anchors = _require(det, "anchors", where, dict)
    for key in ("num_layers", "input_size_height", "input_size_width"):
        if _require(anchors, key, where + ": anchors", int) <= 0:
            raise MetadataError("{}: anchors: field '{}' must be positive".format(where, key))
    strides = _require(anchors, "strides", where + ": anchors", list)
    if len(strides) != anchors["num_layers"] or not all(isinstance(s, int) and s > 0 for s in strides):
        raise MetadataError("{}: anchors: field 'strides' must hold num_layers positive integers".format(where))
    for key in ("anchor_offset_x", "anchor_offset_y", "interpolated_scale_aspect_ratio"):
        _require(anchors, key, where + ": anchors", (int, float))
    _require(det, "num_anchors", where, int)
    _require(det, "box_scale", where, (int, float))
    crop = _require(det, "crop", where, dict)
    for key in ("scale", "shift_x", "shift_y"):
        _require(crop, key, where + ": crop", (int, float))
    if not 0.2 <= crop["scale"] <= 5.0:
        raise MetadataError("{}: crop: field 'scale' must be within 0.2..5, got {}".format(where, crop["scale"]))
    min_roll = crop.get("min_roll", 0.0)
    if not isinstance(min_roll, (int, float)) or isinstance(min_roll, bool) or not 0.0 <= min_roll <= 45.0:
        raise MetadataError("{}: crop: field 'min_roll' must be degrees within 0..45, got {!r}".format(where, min_roll))
    framing = crop.get("framing", "box")
    if framing not in ("box", "keypoints"):
        raise MetadataError("{}: crop: field 'framing' must be 'box' or 'keypoints', got {!r}".format(where, framing))
    if "template" in crop or "keypoints" in crop or framing == "keypoints":
        _validate_template(crop, det.get("keypoints"), where + ": crop")
    outputs = _require(det, "outputs", where, list)
    if sorted(outputs) != ["boxes", "scores"]:
        raise MetadataError(
            "{}: field 'outputs' must name the model outputs 'boxes' and 'scores' in order, got {}".format(
                where, outputs
            )
        )


def _validate_template(crop, names, where):
    """The keypoint framing (``edge.detect.framing``): ``keypoints`` (names among the detector's
    ``keypoints``) and ``template`` ([u, v] per name, in units of the FER crop's side)."""
    keys = _require(crop, "keypoints", where, list)
    template = _require(crop, "template", where, list)
    if not isinstance(names, list):
        raise MetadataError("{}: field 'keypoints' needs the detector's own 'keypoints' list".format(where))
    if len(keys) < 2 or len(set(keys)) != len(keys) or not all(k in names for k in keys):
        raise MetadataError(
            "{}: field 'keypoints' must name two or more distinct detector keypoints ({}), got {!r}".format(
                where, ", ".join(names), keys
            )
        )
    good = len(template) == len(keys) and all(
        isinstance(p, list)
        and len(p) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and -1.0 <= v <= 2.0 for v in p)
        for p in template
    )
    if not good:
        raise MetadataError(
            "{}: field 'template' must hold one [u, v] pair (numbers within -1..2, units of the crop's side) "
            "per keypoint ({}), got {!r}".format(where, len(keys), template)
        )
    spread = max(abs(a - b) for p in template for q in template for a, b in zip(p, q))
    if spread < 0.05:
        raise MetadataError("{}: field 'template': the points coincide (spread {:.3f})".format(where, spread))


def kind_of(meta):
    """The kind of model the metadata describes (older classifier artifacts carry no 'kind')."""
    return meta.get("kind", CLASSIFIER)


def check_kind(meta, want, source):
    """MetadataError naming ``source`` when the artifact is not the kind of model wanted."""
    got = kind_of(meta)
    if got != want:
        raise MetadataError(
            "{}: this is {}, not {}: {}".format(
                source, KIND_NAMES.get(got, got), KIND_NAMES.get(want, want), KIND_HINTS.get(got, "")
            )
        )
    return meta


def with_layout(meta, layout):
    """A copy of ``meta`` whose input layout is ``layout`` (for converted artifacts)."""
    if layout not in LAYOUTS:
        raise MetadataError("layout must be one of {}, got {!r}".format(LAYOUTS, layout))
    out = copy.deepcopy(meta)
    out["input"]["layout"] = layout
    return out


def input_shape(meta, batch=None):
    """The model input shape for ``batch`` faces (None: dynamic) in the metadata's layout."""
    inp = meta["input"]
    h, w, c = inp["height"], inp["width"], inp["channels"]
    if inp["layout"] == "NCHW":
        return (batch, c, h, w)
    return (batch, h, w, c)


def loads(text, source="metadata"):
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise MetadataError("{}: not valid JSON ({})".format(source, exc)) from exc
    return validate(meta, source)


def dumps(meta):
    return json.dumps(validate(meta), indent=2, sort_keys=True)


def read(path):
    """Read metadata from a JSON file; a clear MetadataError when missing or malformed."""
    if not os.path.isfile(path):
        raise MetadataError("{}: model metadata file not found".format(path))
    with open(path, "r", encoding="utf-8") as handle:
        return loads(handle.read(), path)


def write(meta, path):
    """Write metadata JSON atomically (temporary file, then rename)."""
    return write_atomic(path, dumps(meta) + "\n")


def sidecar_path(artifact_path):
    """Sidecar metadata path of an artifact file (``model.xml`` -> ``model.xml.fer_edge.json``)."""
    return artifact_path + SIDECAR_SUFFIX


def find(artifact_path):
    """Metadata of an artifact: inside a model directory, or in the artifact's sidecar."""
    if os.path.isdir(artifact_path):
        return read(os.path.join(artifact_path, METADATA_FILENAME))
    return read(sidecar_path(artifact_path))
