"""The on-device engine check: a built engine against reference outputs computed on the host.

Device code (Python 3.6, numpy). A check set is an ``.npz`` the bundle ships beside each ONNX
(``model/model.check.npz``, ``model/detector.check.npz``; written by ``fer_edge.bundles.jetson_check_set`` on the
host) holding:

* ``inputs``: uint8 [N, ...] in the model's input layout (faces [N, 1, 48, 48]; letterboxed RGB
  frames [N, 256, 256, 3]); the models take 0..255 values, normalisation is inside the graphs;
* ``output_0``, ``output_1``, ...: the reference outputs in the model's output order;
* ``kind`` (emotion_classifier | face_detector), ``onnx_sha256`` (the model they belong to) and
  ``source`` (how the references were computed).

:func:`verify_engine` runs the engine through ``TensorRTBackend`` (what the agent runs) and compares:

* classifier: probabilities within ``PROBABILITY_ATOL`` and the same top emotion on every face except
  near-ties (reference top-2 closer than twice the tolerance); INT8: same top emotion on >= 90 %;
* detector: face scores (sigmoid of the logits) within ``SCORE_ATOL`` on every anchor, and the box
  regressors of every anchor the reference scores >= 0.5 within ``BOX_ATOL_FRACTION`` of the input size.
"""

import collections

import numpy as np

from edge import metadata as md
from edge.backends.base import BackendError
from jetson.trt_backend import TensorRTBackend

PROBABILITY_ATOL = {"fp32": 1e-3, "fp16": 1e-2, "int8": 1.0}
SCORE_ATOL = {"fp32": 5e-3, "fp16": 5e-2, "int8": 0.15}
BOX_ATOL_FRACTION = {"fp32": 1e-3, "fp16": 1e-2, "int8": 3e-2}
INT8_MIN_AGREEMENT = 0.9
CONFIDENT = 0.5


class CheckError(BackendError):
    """The engine's outputs are outside tolerance (the message holds the numbers)."""


CheckSet = collections.namedtuple("CheckSet", "inputs outputs kind onnx_sha256 source path")


class CheckReport(collections.namedtuple("CheckReport", "kind precision items max_diff agree detail")):
    """Outcome of a passed check (numbers for the log and the engine's sidecar)."""

    def summary(self):
        return "engine check ({} {}, {} items): {}".format(self.kind, self.precision, self.items, self.detail)

    def as_dict(self):
        return dict(self._asdict())


def load_check_set(path):
    """A CheckSet from ``path``; BackendError naming the file and the missing or bad field."""
    try:
        z = np.load(str(path), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BackendError("{}: not a readable check set ({})".format(path, exc)) from exc
    with z:
        names = set(z.files)
        for field in ("inputs", "output_0", "kind"):
            if field not in names:
                raise BackendError(
                    "{}: check set has no '{}' field (fields: {})".format(path, field, ", ".join(sorted(names)))
                )
        outputs = []  # type: list
        while "output_{}".format(len(outputs)) in names:
            outputs.append(np.array(z["output_{}".format(len(outputs))], dtype=np.float32))
        inputs = np.array(z["inputs"])
        kind = str(z["kind"])
        sha = str(z["onnx_sha256"]) if "onnx_sha256" in names else ""
        source = str(z["source"]) if "source" in names else ""
    for i, out in enumerate(outputs):
        if len(out) != len(inputs):
            raise BackendError("{}: output_{} has {} rows for {} inputs".format(path, i, len(out), len(inputs)))
    if kind not in (md.CLASSIFIER, md.FACE_DETECTOR):
        raise BackendError(
            "{}: check set kind {!r} is not {} or {}".format(path, kind, md.CLASSIFIER, md.FACE_DETECTOR)
        )
    return CheckSet(inputs, outputs, kind, sha, source, str(path))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


def compare_classifier(reference, got, precision):
    ref, out = np.asarray(reference[0], np.float64), np.asarray(got[0], np.float64)
    atol = PROBABILITY_ATOL[precision]
    diff = np.abs(ref - out)
    top2 = np.sort(ref, axis=1)[:, -2:]
    differ = ref.argmax(axis=1) != out.argmax(axis=1)
    hard = differ & ((top2[:, 1] - top2[:, 0]) > 2 * atol)
    agree = int((~differ).sum())
    detail = "max |diff| of probabilities {:.2e} (allowed {:.0e}), same top emotion on {}/{}".format(
        float(diff.max()), atol, agree, len(ref)
    )
    if precision == "int8":
        if agree < INT8_MIN_AGREEMENT * len(ref):
            raise CheckError("INT8 engine: {} (< {:.0%})".format(detail, INT8_MIN_AGREEMENT))
    elif float(diff.max()) > atol or hard.any():
        raise CheckError(
            "{}; faces differing: {}".format(
                detail, ", ".join(str(i) for i in np.flatnonzero(hard)[:10]) or "none beyond near-ties"
            )
        )
    return float(diff.max()), agree, detail


def compare_detector(reference, got, meta, precision):
    names = list((meta.get("detector") or {}).get("outputs") or ["boxes", "scores"])
    ref_boxes, ref_scores = reference[names.index("boxes")], reference[names.index("scores")]
    out_boxes, out_scores = got[names.index("boxes")], got[names.index("scores")]
    ref_p = _sigmoid(np.asarray(ref_scores, np.float64)).reshape(len(ref_scores), -1)
    out_p = _sigmoid(np.asarray(out_scores, np.float64)).reshape(len(out_scores), -1)
    score_diff = float(np.abs(ref_p - out_p).max())
    confident = ref_p >= CONFIDENT
    size = float(max(md.input_shape(meta)[1:]))
    box_atol = BOX_ATOL_FRACTION[precision] * size
    box_diff = 0.0
    if confident.any():
        rb = np.asarray(ref_boxes, np.float64)[confident]
        ob = np.asarray(out_boxes, np.float64)[confident]
        box_diff = float(np.abs(rb[:, :4] - ob[:, :4]).max())
    found = int(confident.any(axis=1).sum())
    detail = (
        "face scores max |diff| {:.3f} (allowed {:.2f}); boxes of {} confident anchors max |diff| {:.2f} px "
        "(allowed {:.2f}); faces in {}/{} frames".format(
            score_diff, SCORE_ATOL[precision], int(confident.sum()), box_diff, box_atol, found, len(ref_p)
        )
    )
    if score_diff > SCORE_ATOL[precision] or box_diff > box_atol:
        raise CheckError(detail)
    return max(score_diff, box_diff / size), int(confident.sum()), detail


def compare(checks, got, meta, precision):
    """CheckReport, or CheckError with the numbers."""
    if len(got) != len(checks.outputs) or any(np.shape(g) != np.shape(r) for g, r in zip(got, checks.outputs)):
        raise CheckError(
            "engine outputs {} differ in shape from the check set's {}".format(
                [np.shape(g) for g in got], [np.shape(r) for r in checks.outputs]
            )
        )
    if not all(np.all(np.isfinite(g)) for g in got):
        raise CheckError("engine outputs hold NaN or infinite values")
    if checks.kind == md.CLASSIFIER:
        diff, agree, detail = compare_classifier(checks.outputs, got, precision)
    else:
        diff, agree, detail = compare_detector(checks.outputs, got, meta, precision)
    return CheckReport(checks.kind, precision, int(len(checks.inputs)), diff, agree, detail)


def verify_engine(engine_path, meta, checks, precision, backend=None):
    """Run ``checks`` through the engine (``TensorRTBackend``, or ``backend``) and compare; CheckReport."""
    if checks.kind != md.kind_of(meta):
        raise CheckError(
            "{}: the check set {} is for a {}, the model is a {}".format(
                engine_path, checks.path, checks.kind, md.kind_of(meta)
            )
        )
    if tuple(checks.inputs.shape[1:]) != tuple(md.input_shape(meta)[1:]):
        raise CheckError(
            "{}: check inputs {} do not fit the model's input {}".format(
                checks.path, checks.inputs.shape[1:], md.input_shape(meta)[1:]
            )
        )
    own = backend is None
    if own:
        backend = TensorRTBackend(engine_path, meta)
    try:
        got = backend.run(checks.inputs.astype(np.float32))
    finally:
        if own:
            backend.close()
    try:
        return compare(checks, got, meta, precision)
    except CheckError as exc:
        raise CheckError(
            "{} against {} ({}): {}".format(engine_path, checks.path, checks.source or "host reference", exc)
        ) from exc
