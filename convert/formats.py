"""The converters of the formats in ``edge.formats.FORMATS`` (the one table, shared with the agents).

Each row names a format, the suffix of its artifact file, the Python modules its converter needs
and what it is for. The converter functions live in their own modules and are imported lazily by
:func:`converter`, so agents and backend loaders can use the table on a device.

Every converter has the signature ``fn(savedmodel_dir, out_dir, **options) -> artifact path`` and
verifies the artifact numerically against the SavedModel before moving it into ``out_dir``.
"""

import importlib
import importlib.util

from edge.formats import FORMATS, NAMES, Format, for_path, get  # noqa: F401  (the one table)

# name -> (module, function); kept apart from FORMATS so the table stays plain data.
_CONVERTERS = {
    "onnx": ("convert.onnx_export", "export_onnx"),
    "openvino": ("convert.openvino_export", "export_openvino"),
    "deeplens": ("convert.deeplens_export", "export_deeplens"),
    "tensorrt": ("convert.tensorrt_build", "export_tensorrt"),
}


def _installed(module):
    """Found as a real module (a namespace package without code, e.g. left by type stubs, is not)."""
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.origin not in (None, "namespace")


def missing_requirements(name):
    """The modules format ``name`` needs that are not installed here (without importing them)."""
    return [m for m in get(name).requires if not _installed(m)]


def converter(name):
    """The converter function of format ``name`` (imports its module now)."""
    get(name)
    module, function = _CONVERTERS[name]
    return getattr(importlib.import_module(module), function)
