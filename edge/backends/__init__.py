"""Inference backends, chosen from the artifact (suffix table, then availability).

``BACKENDS`` lists, per runtime, where its class lives; classes are imported lazily so that a
device only needs the runtime it uses. ``load_backend(path)`` reads the artifact's metadata and
returns the first available backend that loads its suffix, or a BackendError saying what is
missing.
"""

import importlib
import os

from .. import metadata as md
from .base import Backend, BackendError  # noqa: F401

# (runtime name, suffixes, module, class) in order of preference for a suffix.
BACKENDS = (
    ("tensorrt", (".engine",), "jetson.trt_backend", "TensorRTBackend"),
    ("onnxruntime", (".onnx",), "edge.backends.onnxruntime_backend", "OnnxRuntimeBackend"),
    ("openvino", (".xml", ".onnx"), "edge.backends.openvino_backend", "OpenVinoBackend"),
)


def _onnx_metadata(path):
    """Metadata embedded in an ONNX file (metadata_props), else its sidecar."""
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        model = onnx.load(path, load_external_data=False)
        for prop in model.metadata_props:
            if prop.key == md.ONNX_METADATA_KEY:
                return md.loads(prop.value, "{}: metadata_props['{}']".format(path, md.ONNX_METADATA_KEY))
    if os.path.isfile(md.sidecar_path(path)):
        return md.find(path)
    if onnx is None:
        # onnxruntime exposes custom metadata too; used where the onnx package is absent
        try:
            import onnxruntime as ort
            meta_map = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).get_modelmeta()
            text = meta_map.custom_metadata_map.get(md.ONNX_METADATA_KEY)
            if text:
                return md.loads(text, path)
        except ImportError:
            pass
    raise md.MetadataError("{}: no fer-edge metadata (metadata_props '{}' or sidecar {})".format(
        path, md.ONNX_METADATA_KEY, md.sidecar_path(path)))


def artifact_metadata(path):
    """The fer-edge metadata an artifact carries (embedded or sidecar)."""
    if str(path).endswith(".onnx"):
        return _onnx_metadata(path)
    return md.find(path)


def backend_classes(path):
    """Backend classes able to load ``path`` by suffix, in order of preference (not yet checked)."""
    out = []
    for name, suffixes, module, cls in BACKENDS:
        if str(path).endswith(suffixes):
            out.append((name, module, cls))
    return out


def load_backend(path, runtime=None, **options):
    """Load ``path`` with ``runtime`` or the first available runtime for its suffix."""
    path = str(path)
    if not os.path.exists(path):
        raise BackendError("{}: model artifact not found".format(path))
    candidates = backend_classes(path)
    if runtime:
        candidates = [c for c in candidates if c[0] == runtime]
    if not candidates:
        raise BackendError("{}: no backend{} loads this kind of artifact (known suffixes: {})".format(
            path, " '{}'".format(runtime) if runtime else "",
            ", ".join(sorted({s for _, suffixes, _, _ in BACKENDS for s in suffixes}))))
    meta = artifact_metadata(path)
    missing = []
    for name, module, cls_name in candidates:
        try:
            cls = getattr(importlib.import_module(module), cls_name)
        except ImportError as exc:
            missing.append("{} ({})".format(name, exc))
            continue
        if cls.available():
            return cls(path, meta, **options)
        missing.append("{} (needs {})".format(name, ", ".join(cls.requires)))
    raise BackendError("{}: no runtime for it is installed here: {}".format(path, "; ".join(missing)))
