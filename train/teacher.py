"""Teacher files for knowledge distillation: the shipped models' calibrated probabilities on the
Train faces the trainer uses, written once (``fer-edge teacher``) and checked by the trainer.

The probabilities come through the project's own classifier (``edge.classifier.load_classifier`` on
ONNX Runtime): the shipped ONNX graphs flip-average in-graph and the classifier applies the
temperature of each model's calibration metadata, so the teacher is exactly what devices report.
Several models: the ensemble is the normalised geometric mean of their calibrated probabilities.

A teacher file (.npz) holds:

    probs         float32 [N, 8]  the teacher's distribution per face, in the trainer's face order
    mode          the FER+ label mode whose FER2013Train faces these are (``labelled(mode)``)
    count         N
    faces_sha256  SHA-256 of the uint8 faces array [N, 48, 48] (C order)
    models        the model names/paths as given; model_ids, temperatures: from each model's metadata
    data          the dataset it was computed on

The trainer refuses a file whose mode, count or hash does not match its faces (after --limit-train),
with a ValueError naming the file and the key.
"""

import hashlib
import os
import time
from typing import Any, Callable, Sequence

import numpy as np

from edge.labels import EMOTIONS, NUM_CLASSES

TRAIN_SPLIT = "FER2013Train"
# Floor on probabilities before the logarithm of the geometric mean (a runtime may round to 0).
FLOOR = 1e-12


def faces_sha256(faces: np.ndarray) -> str:
    """SHA-256 of a uint8 faces array (its bytes in C order; the count is checked separately)."""
    return hashlib.sha256(np.ascontiguousarray(faces, dtype=np.uint8).tobytes()).hexdigest()


def geometric_ensemble(probs: Sequence[np.ndarray]) -> np.ndarray:
    """Normalised geometric mean of several [N, K] probability arrays: exp(mean(log p)), rows summing to 1."""
    logs = np.mean([np.log(np.maximum(np.asarray(p, np.float64), FLOOR)) for p in probs], axis=0)
    logs -= logs.max(axis=1, keepdims=True)
    out = np.exp(logs)
    return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)


def distilled_target(target: np.ndarray, teacher: np.ndarray, alpha: float) -> np.ndarray:
    """The training target with distillation: alpha * teacher + (1 - alpha) * the mode's target."""
    if alpha <= 0.0:
        return target
    return (alpha * teacher + (1.0 - alpha) * target).astype(np.float32)


def model_probabilities(
    model: str, faces: np.ndarray, batch_size: int = 256, threads: int = 2, log: Callable[[str], None] = print
) -> tuple[np.ndarray, dict[str, Any]]:
    """Calibrated probabilities [N, 8] of one model (a shipped name or an ONNX path) on ``faces``,
    batched through ONNX Runtime; and what the file records about the model."""
    from edge.classifier import load_classifier, resolve_model

    path = resolve_model(model)
    clf = load_classifier(path, runtime="onnxruntime", threads=threads)
    try:
        if tuple(clf.labels) != tuple(EMOTIONS):
            raise ValueError("{}: labels {} are not {}".format(path, list(clf.labels), list(EMOTIONS)))
        if clf.temperature is None:
            log("warning: {} carries no calibration temperature; its raw probabilities are used".format(path))
        out = np.zeros((len(faces), NUM_CLASSES), np.float32)
        start = time.monotonic()
        step = max(1, len(faces) // (10 * batch_size)) * batch_size  # about ten progress lines
        for i in range(0, len(faces), batch_size):
            out[i : i + batch_size] = clf.predict(faces[i : i + batch_size])
            done = min(i + batch_size, len(faces))
            if done % step < batch_size or done == len(faces):
                log("  {}: {}/{} faces, {:.0f} s".format(model, done, len(faces), time.monotonic() - start))
        info = {"model": model, "path": path, "model_id": clf.model_id, "temperature": clf.temperature}
    finally:
        clf.close()
    return out, info


def compute_teacher(
    data_path: str,
    models: Sequence[str],
    out: str,
    mode: str = "crossentropy",
    limit: int = 0,
    batch_size: int = 256,
    threads: int = 2,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Write the teacher file ``out`` for the Train faces of ``data_path`` in ``mode``; returns a summary
    (face count, seconds, agreement of the teacher's argmax with the faces' majority label)."""
    from .dataset import read_source
    from .labels import MODES

    if mode not in MODES:
        raise ValueError("teacher: unknown label mode {!r} (choose from {})".format(mode, ", ".join(MODES)))
    if not models:
        raise ValueError("teacher: no models given")
    data = read_source(data_path)
    if TRAIN_SPLIT not in data.available_splits():
        raise ValueError("{}: no {} faces to compute a teacher on".format(data_path, TRAIN_SPLIT))
    faces, dists, _ = data.split(TRAIN_SPLIT).labelled(mode)
    if limit:
        faces, dists = faces[:limit], dists[:limit]
    log("teacher on {} {} faces ({} mode) from {}".format(len(faces), TRAIN_SPLIT, mode, data_path))
    start = time.monotonic()
    per_model, infos = [], []
    for model in models:
        probs, info = model_probabilities(model, faces, batch_size, threads, log)
        per_model.append(probs)
        infos.append(info)
    teacher = per_model[0] if len(per_model) == 1 else geometric_ensemble(per_model)
    seconds = time.monotonic() - start
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "wb") as f:  # a file object: np.savez would append .npz to a name without it
        np.savez(
            f,
            probs=teacher,
            mode=np.array(mode),
            count=np.array(len(faces), np.int64),
            faces_sha256=np.array(faces_sha256(faces)),
            models=np.array([i["model"] for i in infos]),
            model_ids=np.array([i["model_id"] for i in infos]),
            temperatures=np.array([np.nan if i["temperature"] is None else i["temperature"] for i in infos]),
            data=np.array(str(data_path)),
        )
    # A sanity check that needs no Valid face: the teacher's argmax against the faces' top label.
    agreement = float(np.mean(teacher.argmax(1) == dists.argmax(1))) if len(faces) else 0.0
    summary = {
        "out": out,
        "faces": int(len(faces)),
        "mode": mode,
        "models": list(models),
        "seconds": round(seconds, 1),
        "train_agreement": agreement,
        "per_model_train_agreement": {
            m: float(np.mean(p.argmax(1) == dists.argmax(1))) if len(faces) else 0.0 for m, p in zip(models, per_model)
        },
    }
    log(
        "wrote {}: {} faces, {:.0f} s; argmax agrees with the Train top label on {:.1%}".format(
            out, len(faces), seconds, agreement
        )
    )
    return summary


def load_teacher(path: str, mode: str, faces: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """The teacher's probabilities for exactly these ``faces`` (the trainer's, after --limit-train) in
    ``mode``, and its provenance; ValueError naming the file and the key when anything does not match."""
    if not os.path.isfile(path):
        raise ValueError("{}: teacher file not found (config 'teacher')".format(path))
    try:
        with np.load(path, allow_pickle=False) as f:
            raw = {k: f[k] for k in f.files}
    except (OSError, ValueError) as exc:
        raise ValueError("{}: not a teacher file ({})".format(path, exc)) from exc
    for key in ("probs", "mode", "count", "faces_sha256", "models"):
        if key not in raw:
            raise ValueError("{}: teacher file has no '{}' key".format(path, key))
    probs = np.asarray(raw["probs"], np.float32)
    checks = (
        ("mode", str(raw["mode"]), mode),
        ("count", int(raw["count"]), len(faces)),
        ("faces_sha256", str(raw["faces_sha256"]), faces_sha256(faces)),
    )
    for key, found, wanted in checks:
        if found != wanted:
            raise ValueError(
                "{}: teacher '{}' is {!r}, the trainer's faces have {!r} (a teacher for other faces: "
                "rerun `fer-edge teacher` with this --data, --mode and --limit)".format(path, key, found, wanted)
            )
    if probs.shape != (len(faces), NUM_CLASSES):
        raise ValueError("{}: teacher 'probs' has shape {}, expected {}".format(path, probs.shape, (len(faces), 8)))
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or np.max(np.abs(probs.sum(1) - 1.0)) > 1e-3:
        raise ValueError("{}: teacher 'probs' are not probability rows".format(path))
    info = {"teacher": path, "models": [str(m) for m in raw["models"]], "faces": int(len(faces))}
    if "model_ids" in raw:
        info["model_ids"] = [str(m) for m in raw["model_ids"]]
    return probs, info
