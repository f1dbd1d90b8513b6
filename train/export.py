"""Export a trained Keras model as a TensorFlow SavedModel with its fer-edge metadata.

Layout of the export directory::

    saved_model.pb, variables/   serving signature ``serving_default``:
                                 input  ``face``  float32 [N, H, W, 1], gray values in [0, 255]
                                 output ``output_0`` float32 [N, 8], softmax in metadata label order
    fer_edge.json                the model metadata (docs/models/export.md)

The export is written to a temporary sibling directory, checked (the reloaded SavedModel must
reproduce the Keras model's probabilities), and only then moved into place.
"""

import os
import shutil
import tempfile

import numpy as np

from edge import metadata as md

from .predictors import metadata_for, resolve

PARITY_ATOL = 1e-5


def export_savedmodel(
    model_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    force: bool = False,
    check_faces: np.ndarray | None = None,
    flip_average: bool = False,
    data: str | os.PathLike[str] | None = None,
    name: str | None = None,
) -> str:
    """Export ``model_path`` (.keras or run dir) to ``out_dir``; returns ``out_dir``.

    ``check_faces``: optional float32 NHWC batch used for the parity check (default: 64
    deterministic pseudo-faces); raises RuntimeError when the SavedModel disagrees.
    ``flip_average``: export the model averaging each face with its mirror image (2x MACs).
    ``data``: FER+ data; the exported model's FER2013Valid accuracy (majority protocol) is
    measured and written into the metadata (else the training run's figure is kept).
    ``name``: the model's name in the metadata (the ``model.id`` of every event; default: the
    network's own name, e.g. ``vgg13_bn_w0.5_flipavg``), for two models of one architecture.
    """
    import keras
    import tensorflow as tf

    artifact, kind = resolve(model_path)
    if kind != "keras":
        raise ValueError("{}: already a SavedModel; export takes a .keras file or run directory".format(model_path))
    meta = metadata_for(artifact, kind)
    out_dir = os.path.abspath(str(out_dir))
    if os.path.exists(out_dir) and not force:
        raise FileExistsError("{}: output directory exists (use --force to replace it)".format(out_dir))
    from . import attention  # noqa: F401  (registers the custom layers load_model needs)

    model = keras.saving.load_model(artifact, compile=False)  # no optimizer state in the export
    from .provenance import source_commit

    meta["model"]["export_commit"] = source_commit()
    if flip_average:
        from .models import count_macs, with_flip_averaging

        model = with_flip_averaging(model)
        meta["model"].update({"name": model.name, "macs": count_macs(model), "test_time": "flip-average"})
        meta["model"].pop("valid_accuracy", None)
    if name:
        meta["model"]["name"] = str(name)
    if data is not None:
        from .dataset import read_source
        from .trainer import valid_arrays

        x_val, y_val = valid_arrays(read_source(data), meta)
        probs = np.asarray(model.predict(x_val, batch_size=256, verbose=0))
        meta["model"]["valid_accuracy"] = float(np.mean(probs.argmax(1) == y_val.argmax(1)))
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        target = os.path.join(tmp, "model")
        model.export(target, format="tf_saved_model", verbose=False)
        md.write(meta, os.path.join(target, md.METADATA_FILENAME))
        if check_faces is None:
            rng = np.random.default_rng(0)
            check_faces = rng.integers(0, 256, size=(64,) + md.input_shape(meta)[1:]).astype(np.float32)
        expected = np.asarray(model.predict(check_faces, verbose=0))
        serve = tf.saved_model.load(target).signatures["serving_default"]
        got = next(iter(serve(face=tf.constant(check_faces)).values())).numpy()
        diff = float(np.max(np.abs(expected - got)))
        if diff > PARITY_ATOL:
            raise RuntimeError("SavedModel disagrees with the Keras model: max |diff| {:.2e}".format(diff))
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.replace(target, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
