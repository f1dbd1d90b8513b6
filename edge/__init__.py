"""fer-edge device-agnostic core (Python 3.6+; no TensorFlow).

Modules: ``labels`` (the FER+ label list), ``metadata`` (artifact metadata), ``preprocess``
(the one face preprocessing). Agent parts arrive with the agent issue.
"""

from .labels import EMOTIONS  # noqa: F401

__version__ = "0.1.0"
