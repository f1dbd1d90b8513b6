"""``load_classifier``: the library entry point for classifying face crops.

    from edge import load_classifier
    clf = load_classifier()            # the shipped model, best runtime available here
    probs = clf.predict(faces)         # uint8 gray crops [N, H, W] (any H, W) -> float32 [N, 8]
    clf.labels                         # label order of the columns

Python 3.6 compatible (device code).
"""

import os

import numpy as np

from edge import metadata as md
from edge.backends import load_backend
from edge.calibration import apply_temperature, temperature_of
from edge.preprocess import prepare_faces
from edge.shipped import MODELS_DIR

MODEL_ENV = "FER_EDGE_MODEL"
# The default model (issue 22: the default names every emotion): the most accurate shipped model among
# those whose Valid macro recall is >= 0.70 (models/README.md lists them and the rule); devices consume its
# ONNX. The most accurate model overall stays available as ``accurate``.
SHIPPED_MODEL_NAME = "ferplus-vgg13bn-balanced-48"
SHIPPED_MODEL = os.path.join(MODELS_DIR, SHIPPED_MODEL_NAME, "onnx", "model.onnx")


# Shipped models by name (``--model fast``): name -> folder under models/.
NAMED_MODELS = {
    "default": SHIPPED_MODEL_NAME,
    "balanced": "ferplus-vgg13bn-balanced-48",
    # the most accurate on FER2013Valid; never says disgust or contempt (the default until issue 22)
    "accurate": "ferplus-vgg13bn-48",
    # a third of the width, no flip averaging (54 M MACs): class-aware like the default since issue 22
    "fast": "ferplus-vgg13bn-third-balanced-48",
    "fast-accurate": "ferplus-vgg13bn-third-48",  # the fast model until issue 22: never says disgust or contempt
    # Deep-Emotion (issue 25): the attentional network of Minaee et al., a few hundred KB; not the default
    "deep-emotion": "deep-emotion-48",
}
# One name per shipped model (``balanced`` is the default's other name): what is measured and calibrated.
SHIPPED_NAMES = tuple(name for name in NAMED_MODELS if name != "balanced")


def named_model_path(name):
    """The ONNX of a shipped model called ``name`` (``default``, ``accurate``, ``fast``...); ValueError when the
    name is unknown or that model is not in this checkout."""
    if name not in NAMED_MODELS:
        raise ValueError(
            "unknown model name {!r}: give a file (.onnx, .xml, .engine) or one of {}".format(
                name, ", ".join(sorted(NAMED_MODELS))
            )
        )
    path = os.path.join(MODELS_DIR, NAMED_MODELS[name], "onnx", "model.onnx")
    if not os.path.isfile(path):
        raise ValueError("model {!r} ({}) is not shipped in this checkout".format(name, path))
    return path


def resolve_model(path):
    """A model argument as a file path: a shipped model's name, or the path itself."""
    if path and path in NAMED_MODELS:
        return named_model_path(path)
    return path


def default_model_path():
    """$FER_EDGE_MODEL when set (a path or a shipped model's name), else the shipped model's ONNX."""
    return resolve_model(os.environ.get(MODEL_ENV)) or SHIPPED_MODEL


class EmotionClassifier(object):
    """Face crops in, probabilities out, through one backend and the model's metadata.

    The probabilities are calibrated here, whatever the runtime: the temperature of the metadata's
    ``calibration`` section (``edge.calibration``; None: the model's own probabilities)."""

    def __init__(self, backend, self_check=True):
        from edge.backends.base import ModelFileError

        self.backend = backend
        self.meta = backend.meta
        self.labels = tuple(self.meta["labels"])
        self.runtime = backend.name
        try:
            self.temperature = temperature_of(self.meta, str(backend.path))
        except md.MetadataError as exc:
            raise ModelFileError(str(exc)) from exc
        if self_check:
            self.self_check()

    def self_check(self):
        """One inference on a gray face at load: the outputs must be probabilities over the labels.
        Catches corrupt weights that still parse (NaN/inf) and a model whose output does not match
        its metadata, with a message naming the file, before the agent goes online."""
        from edge.backends.base import ModelFileError

        inp = self.meta["input"]
        probe = np.full((1, inp["height"], inp["width"]), 128, np.uint8)
        out = np.asarray(self.backend.infer(prepare_faces(probe, self.meta)))
        where = str(self.backend.path)
        if out.shape != (1, len(self.labels)):
            raise ModelFileError(
                "{}: the model outputs shape {} but its metadata lists {} labels".format(
                    where, out.shape, len(self.labels)
                )
            )
        if not np.all(np.isfinite(out)) or out.min() < -1e-3 or abs(float(out.sum()) - 1.0) > 1e-2:
            raise ModelFileError(
                "{}: the model's outputs are not probabilities ({}; corrupt weights?)".format(
                    where, np.array2string(out[0], precision=3)
                )
            )

    @property
    def model_id(self):
        model = self.meta.get("model", {})
        return model.get("name") or os.path.basename(str(self.backend.path))

    def predict(self, faces):
        """uint8 face crops (gray [N, H, W] array, or a list of gray/BGR crops) -> float32 [N, L],
        calibrated when the metadata carries a temperature."""
        if len(faces) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return apply_temperature(self.backend.infer(prepare_faces(faces, self.meta)), self.temperature)

    def close(self):
        self.backend.close()

    def __repr__(self):
        return "EmotionClassifier({}, runtime={})".format(self.backend.path, self.runtime)


def load_classifier(path=None, runtime=None, **options):
    """Load an exported artifact (.onnx, .xml, .engine); default: the shipped model."""
    return EmotionClassifier(
        load_backend(resolve_model(path) or default_model_path(), runtime=runtime, kind=md.CLASSIFIER, **options)
    )
