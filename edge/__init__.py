"""fer-edge device-agnostic core (Python 3.6+; no TensorFlow).

At the top, what every room shares: ``labels`` (the FER+ label list), ``metadata`` (artifact
metadata), ``preprocess`` (the one face preprocessing), ``formats`` (the one table of artifact
formats), ``backends/`` (one class per runtime behind one base), ``classifier``
(``load_classifier``), ``pipeline`` (``detect_emotions``), ``files``, ``shipped``, ``version``.
Then one folder per job: ``detect/`` (face detectors, FER-framed crops), ``agent/`` (the loop of
injected parts, several cameras, assembly, sources, metrics), ``tracking/`` (tracker, face
lifecycle, publish policy), ``events/`` (payloads and schemas, Home Assistant discovery),
``delivery/`` (publishers, MQTT, the outbox), ``view/`` (annotation, live view), ``config/``,
``greengrass/`` (the V2 component's device side).
"""

from edge.classifier import load_classifier  # noqa: F401
from edge.labels import EMOTIONS  # noqa: F401
from edge.pipeline import detect_emotions  # noqa: F401
from edge.version import __version__  # noqa: F401
