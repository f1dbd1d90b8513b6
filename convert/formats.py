"""The converters of the formats in ``edge.formats.FORMATS`` (the one table, shared with the agents).

Each row names a format, the suffix of its artifact file, its converter function and the Python
modules that converter needs. Converter modules are imported lazily by :func:`converter`, so
agents and backend loaders can use the table on a device.

Every converter has the signature ``fn(savedmodel_dir, out_dir, **options) -> artifact path`` and
verifies the artifact numerically against the SavedModel before moving it into ``out_dir``.
"""

import importlib.util
from typing import Callable

from edge.formats import FORMATS, NAMES, Format, for_path, get, resolve  # noqa: F401  (the one table)


def _installed(module):
    """Found as a real module (a namespace package without code, e.g. left by type stubs, is not)."""
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.origin not in (None, "namespace")


def missing_requirements(name: str) -> list[str]:
    """The modules format ``name`` needs that are not installed here (without importing them)."""
    return [m for m in get(name).requires if not _installed(m)]


def converter(name: str) -> Callable[..., str]:
    """The converter function of format ``name`` (imports its module now)."""
    return resolve(get(name).converter)
