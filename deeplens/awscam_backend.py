"""``AwscamBackend``: the fer-edge model on the DeepLens inference engine (``awscam.Model``).

Artifacts it loads (``path``):

* ``model.tar.gz`` from ``fer-edge convert deeplens`` (the frozen ``model.pb`` and its metadata
  ``model.pb.fer_edge.json``): the two files are extracted beside the tarball (or into
  ``artifacts_dir``), then handled as the ``.pb``;
* ``model.pb``, the frozen TF1 GraphDef (what DeepLens leaves in ``/opt/awscam/artifacts`` when it
  deploys the imported model), with its metadata sidecar: optimized on the device with
  ``mo.optimize(stem, W, H, platform='tf', aux_inputs)`` unless an IR of it, newer than the
  ``.pb``, is already there (``reuse_ir``);
* an optimized IR ``.xml`` (from ``mo``, or the ``openvino`` converter), used as it is, with the
  metadata from its sidecar or from the one ``*.pb.fer_edge.json`` / ``*.tar.gz.fer_edge.json``
  beside it;
* a folder: the artifact called ``model_name`` in it (:func:`find_model_artifact`).

The IR is loaded with ``awscam.Model(xml, {'GPU': 1})`` (``gpu=False``: ``{'GPU': 0}``, the CPU).

Input. ``awscam``'s ``doInference`` takes one image at a time: AWS's samples pass an H x W x 3
array (a resized camera frame; for TensorFlow models a float32 H x W x 3 array, after
``mo.optimize(name, W, H, platform='tf')`` with no other options), and it returns ``{output layer
name: flat numpy array}``. So :meth:`AwscamBackend.run` runs one call per face and view. Each face
is preprocessed by ``edge.preprocess.prepare_faces`` exactly as on every other runtime (gray,
resized to the metadata's H x W, float32 0..255; the normalisation is in the graph), then
:func:`device_views` makes the arrays the device runs: H x W x C with C the metadata's
``input.channels`` (the gray face repeated in the 3 channels of a ``fer-edge convert deeplens``
artifact, whose graph averages them back to the same gray face; C = 1 for the IR of the
``openvino`` converter, whose NCHW layout is transposed back to HWC first), and, when the
metadata's ``model.flip_average`` is ``"runtime"``, the same face mirrored left-right: the DeepLens
graph holds no mirror, so the two probability vectors are averaged here (:func:`combine_views`),
as the flip-averaged SavedModel does inside its graph.

Output. The probabilities are taken from the output layer named in the metadata
(``probabilities``), else from the only layer of the result, else from the only layer holding
exactly ``len(labels)`` values; anything else is a BackendError naming the layers.

Optimizer options (:func:`mo_options`). By default none for a 3-channel model on the GPU, the
call of AWS's TensorFlow sample; ``--img-channels C`` for a model of C != 3 channels (the DeepLens
optimizer assumes 3 otherwise); ``--precision FP32`` when the model runs on the CPU (``gpu=False``:
the CPU plugin takes FP32 IRs, the GPU's clDNN FP16); plus ``--models-dir``/``--output-dir`` when the
``.pb`` is not in ``/opt/awscam/artifacts``. ``mo_aux`` replaces the defaults. If ``mo.optimize``
refuses the options (a non-zero error code) it is tried once more with only the folder entries
before giving up. These option names come from the DeepLens model-optimizer documentation and
were not exercised on a device here (docs/deeplens.md).

Python 3.6/3.7 compatible (device code): numpy at import, ``awscam``/``mo`` on use.
"""

import glob
import logging
import os
import tarfile
from typing import Any, Dict

import numpy as np

from edge import metadata as md
from edge.backends.base import Backend, BackendError
from edge.files import write_atomic

from .device import load_awscam, load_mo

log = logging.getLogger(__name__)

DEFAULT_ARTIFACTS_DIR = "/opt/awscam/artifacts"
DEFAULT_MODEL_NAME = "model"
DEVICE_CHANNELS = 3  # what the DeepLens optimizer assumes and doInference takes (H x W x 3)
FLIP_AVERAGE_KEY = "flip_average"  # in the metadata's "model" section
FLIP_BY_RUNTIME = "runtime"  # the graph holds one view; the runtime averages it with the mirrored face
FOLDER_OPTIONS = ("--models-dir", "--output-dir")
MO_ERRORS = {
    1: "the platform is not supported by this model optimizer",
    2: "the model optimizer failed (see the Lambda's log on the device)",
}


def _stem(path):
    name = os.path.basename(path)
    for suffix in (".tar.gz", ".pb", ".xml"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def find_model_artifact(folder, name=DEFAULT_MODEL_NAME):
    """The artifact called ``name`` in ``folder``: ``name.pb`` (with its sidecar), else
    ``name.tar.gz``, else ``name.xml``; BackendError listing what was looked for."""
    tried = []
    for candidate in (name + ".pb", name + ".tar.gz", name + ".xml"):
        path = os.path.join(folder, candidate)
        tried.append(path)
        if os.path.isfile(path):
            return path
    raise BackendError(
        "no fer-edge model in {}: looked for {} (import the model artifact from "
        "`fer-edge convert deeplens` into the DeepLens project, or set FER_EDGE_MODEL)".format(folder, ", ".join(tried))
    )


def _tar_members(tar_path):
    """(pb member, metadata member) of a DeepLens artifact tarball."""
    try:
        with tarfile.open(tar_path, "r:gz") as tar:
            names = [m.name for m in tar.getmembers() if m.isfile()]
    except (tarfile.TarError, OSError) as exc:
        raise BackendError("{}: not a readable .tar.gz ({})".format(tar_path, exc)) from exc
    pbs = [n for n in names if n.endswith(".pb")]
    if len(pbs) != 1:
        raise BackendError("{}: expected one .pb in the tarball, found {}".format(tar_path, pbs or "none"))
    meta = md.sidecar_path(pbs[0])
    if meta not in names:
        raise BackendError(
            "{}: the tarball has no metadata {} (build it with `fer-edge convert deeplens`)".format(tar_path, meta)
        )
    return pbs[0], meta


def _read_member(tar, name, tar_path):
    """The bytes of the file ``name`` in the open tarball ``tar``."""
    handle = tar.extractfile(name)
    if handle is None:  # _tar_members lists regular files only
        raise BackendError("{}: {} is not a regular file in the tarball".format(tar_path, name))
    return handle.read()


def tar_metadata(tar_path):
    """The metadata packed in a ``fer-edge convert deeplens`` tarball."""
    _, meta_name = _tar_members(tar_path)
    with tarfile.open(tar_path, "r:gz") as tar:
        text = _read_member(tar, meta_name, tar_path).decode("utf-8")
    return md.loads(text, "{}:{}".format(tar_path, meta_name))


def extract_artifact(tar_path, folder=None):
    """Extract the .pb and its metadata of a DeepLens tarball into ``folder`` (default: beside the
    tarball), unless they are there and newer; returns the .pb path. Member paths are reduced to
    their base names, so nothing is written outside ``folder``."""
    folder = folder or os.path.dirname(os.path.abspath(tar_path))
    pb_name, meta_name = _tar_members(tar_path)
    pb_path = os.path.join(folder, os.path.basename(pb_name))
    fresh = all(
        os.path.isfile(p) and os.path.getmtime(p) >= os.path.getmtime(tar_path)
        for p in (pb_path, md.sidecar_path(pb_path))
    )
    if fresh:
        return pb_path
    if not os.path.isdir(folder):
        os.makedirs(folder)
    with tarfile.open(tar_path, "r:gz") as tar:
        for member in (pb_name, meta_name):
            write_atomic(os.path.join(folder, os.path.basename(member)), _read_member(tar, member, tar_path))
    log.info("%s: extracted %s into %s", tar_path, os.path.basename(pb_name), folder)
    return pb_path


def artifact_metadata(path):
    """The fer-edge metadata of a DeepLens artifact (tarball, .pb, IR .xml or folder)."""
    if os.path.isdir(path):
        path = find_model_artifact(path)
    if path.endswith(".tar.gz"):
        if os.path.isfile(md.sidecar_path(path)):
            return md.read(md.sidecar_path(path))
        return tar_metadata(path)
    if os.path.isfile(md.sidecar_path(path)):
        return md.read(md.sidecar_path(path))
    if path.endswith(".xml"):
        folder = os.path.dirname(os.path.abspath(path))
        found = sorted(
            glob.glob(os.path.join(folder, "*.pb" + md.SIDECAR_SUFFIX))
            + glob.glob(os.path.join(folder, "*.tar.gz" + md.SIDECAR_SUFFIX))
        )
        stem = _stem(path)
        same = [f for f in found if stem in os.path.basename(f)]
        if len(same) == 1 or len(found) == 1:
            return md.read((same or found)[0])
    raise BackendError(
        "{}: no fer-edge metadata (expected {}{})".format(
            path, md.sidecar_path(path), " or one *.pb.fer_edge.json beside it" if path.endswith(".xml") else ""
        )
    )


def runtime_flip_average(meta):
    """True when the runtime must average each face with its mirror image (the metadata's
    ``model.flip_average`` is ``"runtime"``: the graph holds one view of a flip-averaged model)."""
    return meta.get("model", {}).get(FLIP_AVERAGE_KEY) == FLIP_BY_RUNTIME


def device_views(batch, meta):
    """The float32 NHWC batches the device runs for preprocessed faces (``prepare_faces`` output in
    the metadata's layout): the faces with the model's channels (a gray face repeated), and their
    left-right mirror images when :func:`runtime_flip_average`. One row per face and view."""
    x = np.asarray(batch, dtype=np.float32)
    if meta["input"]["layout"] == "NCHW":
        x = np.transpose(x, (0, 2, 3, 1))
    channels = int(meta["input"]["channels"])
    if x.shape[3] == 1 and channels > 1:
        x = np.repeat(x, channels, axis=3)
    if x.shape[3] != channels:
        raise BackendError("faces with {} channels for a model of {}".format(x.shape[3], channels))
    views = [np.ascontiguousarray(x)]
    if runtime_flip_average(meta):
        views.append(np.ascontiguousarray(x[:, :, ::-1, :]))
    return views


def combine_views(outputs):
    """The probabilities of a face from those of its views (their mean, as the model's Average)."""
    outputs = [np.asarray(o, dtype=np.float32) for o in outputs]
    if len(outputs) == 1:
        return outputs[0]
    return (np.sum(outputs, axis=0) * np.float32(1.0 / len(outputs))).astype(np.float32)


def mo_options(meta, gpu=True, aux=None):
    """``aux_inputs`` for ``mo.optimize`` (before the folder entries): ``aux`` when given, else
    ``--img-channels`` for a model of other than 3 channels and ``--precision FP32`` on the CPU."""
    if aux is not None:
        return dict(aux)
    options: Dict[str, Any] = {}
    channels = int(meta["input"]["channels"])
    if channels != DEVICE_CHANNELS:
        options["--img-channels"] = channels
    if not gpu:
        options["--precision"] = "FP32"
    return options


def existing_ir(pb_path, folder=None, fp32=False):
    """An IR optimized earlier from ``pb_path`` (newer than it) in ``folder``, or None; with ``fp32``
    none whose name says FP16 (the CPU plugin takes FP32 IRs)."""
    folder = folder or os.path.dirname(os.path.abspath(pb_path))
    stem = _stem(pb_path)
    patterns = [stem + ".xml", "tf_" + stem + ".xml", "tf_" + stem + "_*.xml", stem + "_FP16*.xml", stem + "_FP32*.xml"]
    found = set()
    for pattern in patterns:
        found.update(glob.glob(os.path.join(folder, pattern)))
    if fp32:
        found = set(p for p in found if "FP16" not in os.path.basename(p))
    pb_time = os.path.getmtime(pb_path)
    current = [p for p in found if os.path.getmtime(p) >= pb_time and os.path.isfile(p[:-4] + ".bin")]
    return max(current, key=os.path.getmtime) if current else None


def optimize(pb_path, meta, mo=None, aux=None, output_dir=None, log_fn=None, gpu=True):
    """Run the DeepLens model optimizer on a frozen .pb; returns the IR .xml path."""
    mo = mo if mo is not None else load_mo()
    folder = os.path.dirname(os.path.abspath(pb_path))
    stem = _stem(pb_path)
    width, height = int(meta["input"]["width"]), int(meta["input"]["height"])
    extra = mo_options(meta, gpu, aux)
    if folder != DEFAULT_ARTIFACTS_DIR or (output_dir and output_dir != DEFAULT_ARTIFACTS_DIR):
        extra.setdefault("--models-dir", folder)
        extra.setdefault("--output-dir", output_dir or folder)
    attempts = [extra]
    if any(k not in FOLDER_OPTIONS for k in extra):
        attempts.append(dict((k, v) for k, v in extra.items() if k in FOLDER_OPTIONS))
    errors = []
    for options in attempts:
        say = log_fn or log.info
        say("mo.optimize({!r}, {}, {}, platform='tf', aux_inputs={!r})".format(stem, width, height, options))
        try:
            if options:
                error, xml = mo.optimize(stem, width, height, platform="tf", aux_inputs=options)
            else:
                error, xml = mo.optimize(stem, width, height, platform="tf")
        except Exception as exc:  # the optimizer raises on some failures instead of returning a code
            errors.append("{}: {}: {}".format(options, type(exc).__name__, exc))
            continue
        if error == 0 and xml and os.path.isfile(str(xml)):
            return str(xml)
        errors.append(
            "{}: error {} ({}), model path {!r}".format(options, error, MO_ERRORS.get(error, "unknown error code"), xml)
        )
    raise BackendError("{}: the DeepLens model optimizer could not convert it: {}".format(pb_path, "; ".join(errors)))


def pick_output(result, name, size):
    """The flat probability vector of ``size`` values in a ``doInference`` result dict."""
    if not isinstance(result, dict) or not result:
        raise BackendError("doInference returned {!r}, expected a dict of output layers".format(type(result).__name__))
    if name in result:
        value = result[name]
    elif len(result) == 1:
        value = next(iter(result.values()))
    else:
        sized = [k for k, v in result.items() if np.asarray(v).size == size]
        if len(sized) != 1:
            raise BackendError(
                "doInference returned layers {} and none is '{}' (the metadata's output); "
                "cannot tell which holds the probabilities".format(sorted(map(str, result)), name)
            )
        value = result[sized[0]]
    value = np.asarray(value, dtype=np.float32).reshape(-1)
    if value.size != size:
        raise BackendError("the output layer holds {} values, the model has {} labels".format(value.size, size))
    return value


class AwscamBackend(Backend):
    """A fer-edge model on ``awscam.Model`` (DeepLens GPU, or CPU with ``gpu=False``)."""

    name = "awscam"

    def __init__(
        self,
        path,
        meta=None,
        gpu=True,
        artifacts_dir=None,
        model_name=DEFAULT_MODEL_NAME,
        mo_aux=None,
        reuse_ir=True,
        input_dtype="float32",
        awscam=None,
        mo=None,
    ):
        path = str(path)
        if os.path.isdir(path):
            path = find_model_artifact(path, model_name)
        if not os.path.isfile(path):
            raise BackendError("{}: model artifact not found".format(path))
        Backend.__init__(self, path, meta if meta is not None else artifact_metadata(path))
        self.labels = list(self.meta["labels"])
        self.output_name = self.meta.get("output", {}).get("name", "probabilities")
        self.input_dtype = np.dtype(input_dtype)
        if path.endswith(".tar.gz"):
            path = extract_artifact(path, artifacts_dir)
        if path.endswith(".pb"):
            ir = existing_ir(path, fp32=not gpu) if reuse_ir else None
            if ir:
                log.info("%s: reusing the optimized model %s", path, ir)
            else:
                ir = optimize(path, self.meta, mo=mo, aux=mo_aux, gpu=gpu)
            path = ir
        if not path.endswith(".xml"):
            raise BackendError("{}: expected a .tar.gz, .pb or .xml DeepLens artifact".format(self.path))
        self.xml = path
        self.loading_config = {"GPU": 1 if gpu else 0}
        awscam = awscam if awscam is not None else load_awscam()
        try:
            self.model = awscam.Model(self.xml, self.loading_config)
        except Exception as exc:
            raise BackendError(
                "{}: awscam.Model cannot load it with {} ({}: {})".format(
                    self.xml, self.loading_config, type(exc).__name__, exc
                )
            ) from exc
        log.info("model %s loaded on the %s", self.xml, "GPU" if gpu else "CPU")

    def run(self, batch):
        """[probabilities [N, len(labels)]]: the classifier's one output."""
        views = device_views(batch, self.meta)
        out = np.empty((len(views[0]), len(self.labels)), dtype=np.float32)
        for i in range(len(out)):
            # one H x W x C image per doInference call: the face, and its mirror image when the
            # runtime flip-averages (runtime_flip_average)
            out[i] = combine_views(
                [
                    pick_output(
                        self.model.doInference(np.ascontiguousarray(view[i], self.input_dtype)),
                        self.output_name,
                        len(self.labels),
                    )
                    for view in views
                ]
            )
        return [out]
