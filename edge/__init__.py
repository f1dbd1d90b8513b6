"""fer-edge device-agnostic core (Python 3.6+; no TensorFlow).

Modules: ``labels`` (the FER+ label list), ``metadata`` (artifact metadata), ``preprocess``
(the one face preprocessing), ``backends`` (one class per runtime), ``classifier``
(``load_classifier``), ``pipeline`` (``detect_emotions``), and the agent parts: ``sources``,
``detect``, ``track``, ``policy``, ``events``, ``outbox``, ``publish``, ``agent``, ``service``, ``config``.
"""

from edge.classifier import load_classifier  # noqa: F401
from edge.labels import EMOTIONS  # noqa: F401
from edge.pipeline import detect_emotions  # noqa: F401

__version__ = "0.1.0"
