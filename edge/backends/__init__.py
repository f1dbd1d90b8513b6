"""Inference backends, chosen from the artifact through the one format table (``edge.formats``).

An artifact's format (by suffix) names the runtimes that load it in order of preference; the
first one installed here is used. Backend classes are imported lazily, so a device only needs
the runtime it uses. ``load_backend(path, kind=...)`` reads the artifact's metadata, checks that
it is the kind of model the caller wants (a face detector or an emotion classifier) and returns
the backend, or a BackendError saying what is wrong or missing.
"""

import os

from .. import formats
from .. import metadata as md
from ..onnx_meta import onnx_model_metadata
from .base import Backend, BackendError, ModelFileError, module_installed  # noqa: F401


def artifact_metadata(path):
    """The fer-edge metadata an artifact carries (embedded in an ONNX file, else its sidecar)."""
    if str(path).endswith(".onnx"):
        return onnx_model_metadata(str(path))
    return md.find(path)


def backend_classes(path):
    """Runtime rows (``edge.formats.Runtime``) able to load ``path``, in order of preference."""
    fmt = formats.for_path(path)
    if fmt is None:
        return []
    return [formats.runtime(name) for name in fmt.runtimes]


def load_backend(path, runtime=None, kind=None, meta=None, **options):
    """Load ``path`` with ``runtime`` or the first available runtime for its suffix.

    ``kind``: the model kind the caller needs (``edge.metadata.CLASSIFIER`` or ``FACE_DETECTOR``);
    an artifact of another kind is refused with a message naming the file.
    """
    path = str(path)
    if not os.path.exists(path):
        raise ModelFileError("{}: model artifact not found".format(path))
    candidates = backend_classes(path)
    if runtime:
        candidates = [c for c in candidates if c.name == runtime]
    if not candidates:
        raise BackendError(
            "{}: no backend{} loads this kind of artifact (formats: {})".format(
                path,
                " '{}'".format(runtime) if runtime else "",
                ", ".join("{} ({})".format(f.suffix, "/".join(f.runtimes)) for f in formats.FORMATS),
            )
        )
    try:
        meta = meta if meta is not None else artifact_metadata(path)
        if kind is not None:
            md.check_kind(meta, kind, path)
    except md.MetadataError as exc:
        raise ModelFileError(str(exc)) from exc
    missing = []
    for row in candidates:
        if not all(module_installed(m) for m in row.requires):
            missing.append("{} (needs {})".format(row.name, ", ".join(row.requires)))
            continue
        try:
            cls = formats.resolve(row.backend)
        except ImportError as exc:
            missing.append("{} ({})".format(row.name, exc))
            continue
        return cls(path, meta, **options)
    raise BackendError("{}: no runtime for it is installed here: {}".format(path, "; ".join(missing)))
