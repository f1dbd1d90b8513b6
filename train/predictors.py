"""Load a trained model for host-side scoring: .keras files, run directories, SavedModels.

Returns the model metadata and a function mapping a preprocessed batch (in the metadata's
layout) to probabilities [N, 8]. Converted artifacts (ONNX, OpenVINO) are scored through the
edge backends once those exist.
"""

import os
from typing import Any, Callable

import numpy as np

from edge import metadata as md


def _keras_predictor(path):
    import keras

    from . import attention  # noqa: F401  (registers the custom layers load_model needs)

    model = keras.saving.load_model(path, compile=False)  # inference only: no custom losses needed
    return lambda x: np.asarray(model.predict(x, batch_size=256, verbose=0))


def _savedmodel_predictor(path):
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    serve = loaded.signatures["serving_default"]
    input_name = list(serve.structured_input_signature[1].keys())[0]

    def predict(x):
        outs = []
        for i in range(0, len(x), 256):
            result = serve(**{input_name: tf.constant(x[i : i + 256])})
            outs.append(next(iter(result.values())).numpy())
        return np.concatenate(outs) if outs else np.zeros((0, 8), np.float32)

    return predict


def resolve(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(artifact path, kind) for a .keras file, run directory or SavedModel directory."""
    path = str(path)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return path, "savedmodel"
        best = os.path.join(path, "best.keras")
        if os.path.isfile(best):
            return best, "keras"
        raise md.MetadataError(
            "{}: neither a SavedModel (saved_model.pb) nor a run directory (best.keras)".format(path)
        )
    if path.endswith(".keras"):
        if not os.path.isfile(path):
            raise md.MetadataError("{}: model file not found".format(path))
        return path, "keras"
    raise md.MetadataError("{}: not a .keras file, run directory or SavedModel directory".format(path))


def metadata_for(path: str, kind: str) -> dict[str, Any]:
    """Metadata: inside a SavedModel; beside a .keras file (sidecar or its run's fer_edge.json)."""
    if kind == "savedmodel":
        return md.find(path)
    sidecar = md.sidecar_path(path)
    if os.path.isfile(sidecar):
        return md.read(sidecar)
    return md.read(os.path.join(os.path.dirname(os.path.abspath(path)), md.METADATA_FILENAME))


def load_predictor(path: str | os.PathLike[str]) -> tuple[dict[str, Any], Callable[[np.ndarray], np.ndarray]]:
    """(metadata, predict) for a .keras file, run directory or SavedModel directory."""
    artifact, kind = resolve(path)
    meta = metadata_for(artifact, kind)
    predict = _savedmodel_predictor(artifact) if kind == "savedmodel" else _keras_predictor(artifact)
    return meta, predict
