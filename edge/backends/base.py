"""The inference backend interface: one small class per runtime (Python 3.6 compatible)."""

import importlib

try:  # for type comments only; typing is stdlib from Python 3.5
    from typing import Tuple  # noqa: F401
except ImportError:  # pragma: no cover
    pass


def module_installed(name):
    """True when ``name`` imports as a real module: not missing, not failing to load its libraries,
    and not an empty namespace package (what type-stub packages such as tensorrt-stubs leave)."""
    try:
        module = importlib.import_module(name)
    except Exception:  # ImportError, or a runtime that fails to load its shared libraries
        return False
    return getattr(module, "__file__", None) is not None


class BackendError(RuntimeError):
    """A model artifact that cannot be loaded or run; the message names the artifact."""


class Backend(object):
    """Runs one model artifact: ``infer(batch) -> probabilities [N, len(labels)]``.

    ``batch`` is float32 in the layout of ``self.meta`` (from ``edge.preprocess.prepare_faces``).
    Subclasses set ``name`` (the runtime), ``suffixes`` (artifacts they load) and ``requires``
    (modules that must be importable), and import those modules inside ``__init__`` only.
    """

    name = "base"
    suffixes = ()  # type: Tuple[str, ...]
    requires = ()  # type: Tuple[str, ...]

    def __init__(self, path, meta):
        self.path = path
        self.meta = meta

    @classmethod
    def available(cls):
        """True when every module in ``requires`` is really installed here (see ``module_installed``)."""
        return all(module_installed(m) for m in cls.requires)

    def infer(self, batch):
        raise NotImplementedError

    def close(self):
        """Release runtime resources (default: nothing to release)."""

    def __repr__(self):
        return "{}({!r})".format(type(self).__name__, self.path)
