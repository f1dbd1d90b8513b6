"""The inference backend interface: one small class per runtime (Python 3.6 compatible).

Which artifacts a runtime loads and which modules it needs live in the one table
(``edge.formats.FORMATS`` and ``RUNTIMES``), not here.
"""

import abc
import importlib


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


class ModelFileError(BackendError):
    """The model file itself is the problem (missing, truncated, corrupt, no metadata, the wrong kind
    of model): retrying will not help (the Jetson service exits 78 so systemd does not loop)."""


class Backend(abc.ABC):
    """Runs one model artifact.

    ``run(batch) -> [output arrays]`` (every model output, in the model's order) is what a
    subclass implements; ``infer(batch)`` returns the first output (a classifier's probabilities
    [N, len(labels)]). ``batch`` is float32 in the layout of ``self.meta``
    (``edge.preprocess.prepare_faces`` for classifiers, ``edge.detect.blazeface`` for detectors).
    Subclasses set ``name`` (their row in ``edge.formats.RUNTIMES``) and import their runtime
    inside ``__init__`` only.
    """

    name = "base"

    def __init__(self, path, meta):
        self.path = path
        self.meta = meta

    @classmethod
    def requires(cls):
        """The modules this runtime needs (from ``edge.formats.RUNTIMES``)."""
        from .. import formats

        return formats.runtime(cls.name).requires

    @classmethod
    def available(cls):
        """True when every module the runtime needs is really installed here (see ``module_installed``)."""
        return all(module_installed(m) for m in cls.requires())

    @abc.abstractmethod
    def run(self, batch):
        """Every output of the model for ``batch``, in the model's order (a list of float32 arrays)."""

    def infer(self, batch):
        """The model's first output for ``batch`` (a classifier's probabilities)."""
        return self.run(batch)[0]

    def close(self):  # noqa: B027 (optional hook: most runtimes hold nothing to release)
        """Release runtime resources (default: nothing to release)."""

    def __repr__(self):
        return "{}({!r})".format(type(self).__name__, self.path)
