"""Inference backends, chosen from the artifact: its format (``edge.formats``, by suffix) names
the runtimes that load it in order of preference, and the first one installed here is used.

``RUNTIMES`` says where each runtime's class lives; classes are imported lazily so that a
device only needs the runtime it uses. ``load_backend(path)`` reads the artifact's metadata and
returns the backend, or a BackendError saying what is missing.
"""

import importlib
import os

from .. import formats
from .. import metadata as md
from .base import Backend, BackendError  # noqa: F401

# runtime name -> (module, class); device adapters (jetson/, deeplens/) provide theirs.
RUNTIMES = {
    "onnxruntime": ("edge.backends.onnxruntime_backend", "OnnxRuntimeBackend"),
    "openvino": ("edge.backends.openvino_backend", "OpenVinoBackend"),
    "tensorrt": ("jetson.trt_backend", "TensorRTBackend"),
    "awscam": ("deeplens.awscam_backend", "AwscamBackend"),
}


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
    """(runtime, module, class) able to load ``path``, in order of preference (not yet imported)."""
    fmt = formats.for_path(path)
    if fmt is None:
        return []
    return [(name,) + RUNTIMES[name] for name in fmt.runtimes if name in RUNTIMES]


def load_backend(path, runtime=None, **options):
    """Load ``path`` with ``runtime`` or the first available runtime for its suffix."""
    path = str(path)
    if not os.path.exists(path):
        raise BackendError("{}: model artifact not found".format(path))
    candidates = backend_classes(path)
    if runtime:
        candidates = [c for c in candidates if c[0] == runtime]
    if not candidates:
        raise BackendError("{}: no backend{} loads this kind of artifact (formats: {})".format(
            path, " '{}'".format(runtime) if runtime else "",
            ", ".join("{} ({})".format(f.suffix, "/".join(f.runtimes)) for f in formats.FORMATS)))
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
