"""Calibrated probabilities: the temperature a model's metadata carries, applied after any runtime.

A classifier's metadata may hold a ``calibration`` section (written by ``python -m convert.calibrate``;
format in docs/models/export.md)::

    "calibration": {"temperature": 1.3, "fit_on": "FER2013Valid", "ece_before": 0.06,
                    "ece_after": 0.01, "bins": 15}

The runtime gives probabilities p; the calibrated ones are p_i^(1/T) renormalised (a temperature on
the log-probabilities), the same on ONNX Runtime, OpenVINO, TensorRT and the DeepLens engine because
``edge.classifier.EmotionClassifier`` applies it to every backend's output in one place.

Bad input: a missing or malformed section loads with a warning and the probabilities stay as the
model gives them (artifacts from before calibration keep working); an impossible temperature (<= 0,
not finite) is a MetadataError naming the file and the key.

Python 3.6 compatible (device code).
"""

import logging
import math

import numpy as np

from edge import metadata as md

logger = logging.getLogger(__name__)

SECTION = "calibration"
KEY = "temperature"
# Probabilities below this are taken as this before the logarithm (a runtime may round to 0).
FLOOR = 1e-12


def temperature_of(meta, source):
    """The temperature in ``meta``'s calibration section; None (after a warning) when the section is
    missing or malformed; MetadataError naming ``source`` and the key when the value is impossible."""
    section = meta.get(SECTION)
    if section is None:
        logger.warning(
            "%s: the model metadata has no '%s' section: confidences are the model's uncalibrated "
            "probabilities (docs/models/export.md, 'Calibration')",
            source,
            SECTION,
        )
        return None
    value = section.get(KEY) if isinstance(section, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        logger.warning(
            "%s: the model metadata's '%s' section is malformed (expected an object with a number '%s', "
            "got %r): confidences are the model's uncalibrated probabilities",
            source,
            SECTION,
            KEY,
            section,
        )
        return None
    if not math.isfinite(value) or value <= 0:
        raise md.MetadataError(
            "{}: metadata key '{}.{}' must be a finite number > 0, got {!r}".format(source, SECTION, KEY, value)
        )
    return float(value)


def apply_temperature(probs, temperature):
    """``probs`` [N, L] -> p_i^(1/T) renormalised per row (float32); unchanged when T is None or 1."""
    if temperature is None or temperature == 1.0:
        return probs
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), FLOOR, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)
