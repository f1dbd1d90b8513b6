"""TensorFlow imported quietly: its C++ start-up lines (oneDNN, CPU features, absl) are written to
the process's stderr before any Python logging exists; the commands that load TensorFlow silence
them here. Host only."""

import os
import sys

TF_COMMANDS = ("train", "evaluate", "export", "convert")


def quiet_tensorflow(command: str | None) -> None:
    """Import TensorFlow with its C++ start-up lines (oneDNN, CPU features, absl: written to the
    process's stderr before any Python logging exists) silenced, for the commands that use it.
    Kept when the user sets TF_CPP_MIN_LOG_LEVEL; an import error still surfaces as usual."""
    if command not in TF_COMMANDS or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        try:
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
        except ImportError:
            pass  # reported by the command itself, with stderr back
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
