"""The inference backend interface: one small class per runtime (Python 3.6 compatible)."""

import importlib


class BackendError(RuntimeError):
    """A model artifact that cannot be loaded or run; the message names the artifact."""


class Backend(object):
    """Runs one model artifact: ``infer(batch) -> probabilities [N, len(labels)]``.

    ``batch`` is float32 in the layout of ``self.meta`` (from ``edge.preprocess.prepare_faces``).
    Subclasses set ``name`` (the runtime), ``suffixes`` (artifacts they load) and ``requires``
    (modules that must be importable), and import those modules inside ``__init__`` only.
    """

    name = "base"
    suffixes = ()
    requires = ()

    def __init__(self, path, meta):
        self.path = path
        self.meta = meta

    @classmethod
    def available(cls):
        """True when every module in ``requires`` can be imported here."""
        for module in cls.requires:
            try:
                importlib.import_module(module)
            except Exception:  # ImportError, or a runtime that fails to load its libraries
                return False
        return True

    def infer(self, batch):
        raise NotImplementedError

    def close(self):
        """Release runtime resources (default: nothing to release)."""

    def __repr__(self):
        return "{}({!r})".format(type(self).__name__, self.path)
