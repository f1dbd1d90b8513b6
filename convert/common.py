"""What every host-side converter shares: reading the SavedModel and writing output atomically.

A converter writes its artifact into a fresh staging folder next to the target, verifies it there
and only then moves the folder into place (``os.replace``): a failed conversion leaves nothing
behind and never replaces a good artifact with a broken one.
"""

import contextlib
import os
import shutil
import tempfile
from typing import Any, Callable, Iterator

import numpy as np

from edge import metadata as md

from .errors import ConversionError

SIGNATURE = "serving_default"
BATCH = 256


class SavedModelSource:
    """A SavedModel written by ``train.export.export_savedmodel``, its metadata and its signature.

    ``meta``: the metadata (NHWC); ``signature``: the serving function; ``input_name`` and
    ``output_name``: its keys; ``height``/``width``/``channels``: the input geometry.
    Keep the object alive while using ``signature`` (it owns the variables).
    """

    def __init__(self, path: str | os.PathLike[str]):
        path = os.path.abspath(str(path))
        if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise ConversionError(
                "{}: not a SavedModel directory (no saved_model.pb); make one with `fer-edge export`".format(path)
            )
        meta_path = os.path.join(path, md.METADATA_FILENAME)
        if not os.path.isfile(meta_path):
            raise ConversionError(
                "{}: model metadata file not found; the SavedModel must come from "
                "`fer-edge export`, which writes {} beside saved_model.pb".format(meta_path, md.METADATA_FILENAME)
            )
        self.path = path
        self.meta = md.read(meta_path)
        if self.meta["input"]["layout"] != "NHWC":
            raise ConversionError(
                "{}: input layout {} (a SavedModel from fer-edge export takes NHWC)".format(
                    meta_path, self.meta["input"]["layout"]
                )
            )
        import tensorflow as tf

        self._tf = tf
        self.loaded = tf.saved_model.load(path)
        if SIGNATURE not in self.loaded.signatures:
            raise ConversionError(
                "{}: no '{}' signature (found: {})".format(path, SIGNATURE, ", ".join(self.loaded.signatures) or "none")
            )
        self.signature = self.loaded.signatures[SIGNATURE]
        inputs = self.signature.structured_input_signature[1]
        outputs = self.signature.structured_outputs
        if len(inputs) != 1 or len(outputs) != 1:
            raise ConversionError(
                "{}: the serving signature must have one input and one output, has {} and {}".format(
                    path, sorted(inputs), sorted(outputs)
                )
            )
        ((self.input_name, spec),) = inputs.items()
        self.output_name = next(iter(outputs))
        inp = self.meta["input"]
        self.height, self.width, self.channels = inp["height"], inp["width"], inp["channels"]
        graph_shape = [None if d is None else int(d) for d in spec.shape.as_list()]
        want = [None, self.height, self.width, self.channels]
        if graph_shape != want:
            raise ConversionError(
                "{}: metadata says the input is {}x{}x{} (height x width x channels) but "
                "the SavedModel's serving signature takes {}".format(
                    meta_path, self.height, self.width, self.channels, graph_shape
                )
            )
        if spec.dtype != tf.float32:
            raise ConversionError("{}: serving input dtype {}, expected float32".format(path, spec.dtype.name))
        # Names every artifact gives its input and output (ONNX, OpenVINO, frozen graph, TensorRT).
        self.face_name = inp.get("name", "face")
        self.prob_name = self.meta.get("output", {}).get("name", "probabilities")
        self.input_spec = tf.TensorSpec([None, self.height, self.width, self.channels], tf.float32, name=self.face_name)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities [N, classes] for a float32 NHWC batch (the metadata's preprocessing)."""
        tf = self._tf
        outs = []
        for i in range(0, len(batch), BATCH):
            result = self.signature(**{self.input_name: tf.constant(batch[i : i + BATCH])})
            outs.append(result[self.output_name].numpy())
        if not outs:
            return np.zeros((0, len(self.meta["labels"])), np.float32)
        return np.concatenate(outs)

    def serving_function(self) -> Any:
        """A tf.function ``face -> {probabilities}`` over the SavedModel, for tracing and freezing."""
        tf = self._tf
        signature, input_name, output_name = self.signature, self.input_name, self.output_name
        prob_name = self.prob_name

        @tf.function(input_signature=[self.input_spec])
        def serve(face):
            out = signature(**{input_name: face})[output_name]
            return {prob_name: tf.identity(out, name=prob_name)}

        return serve


def stem_of(name: str) -> str:
    if not name or os.path.basename(name) != name or name.startswith("."):
        raise ConversionError("artifact name {!r} must be a plain file name stem".format(name))
    return name


def refuse_existing(out_dir: str | os.PathLike[str], force: bool = False) -> str:
    """ConversionError when ``out_dir`` exists and ``force`` is not set (checked before any work)."""
    out_dir = os.path.abspath(str(out_dir))
    if os.path.lexists(out_dir) and not force:
        raise ConversionError("{}: output already exists (use --force / force=True to replace it)".format(out_dir))
    return out_dir


@contextlib.contextmanager
def staged_output(out_dir: str | os.PathLike[str], force: bool = False) -> Iterator[str]:
    """Yield a staging folder; on success it replaces ``out_dir``, on error nothing is left.

    ``out_dir`` must not exist unless ``force``.
    """
    out_dir = refuse_existing(out_dir, force)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".convert-", dir=parent)
    try:
        stage = os.path.join(tmp, os.path.basename(out_dir))
        os.mkdir(stage)
        yield stage
        if os.path.isdir(out_dir) and not os.path.islink(out_dir):
            shutil.rmtree(out_dir)
        elif os.path.lexists(out_dir):
            os.remove(out_dir)
        os.replace(stage, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def final_path(stage: str, out_dir: str | os.PathLike[str], staged_file: str) -> str:
    """Where a file written under ``stage`` lives once the stage became ``out_dir``."""
    return os.path.join(os.path.abspath(str(out_dir)), os.path.relpath(staged_file, stage))


def say(log: Callable[[str], None] | None, message: str) -> None:
    if log is not None:
        log(message)
