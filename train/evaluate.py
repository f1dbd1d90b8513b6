"""Evaluation under the FER+ majority protocol: accuracy, per-class P/R/F1, confusion matrix."""

import json
import os
from typing import Any, Callable, Sequence

import numpy as np
import numpy.typing as npt

from edge.labels import EMOTIONS, NUM_CLASSES
from edge.preprocess import prepare_faces

from .dataset import read_source
from .labels import EVAL_MODE
from .predictors import load_predictor


def confusion_matrix(true: npt.ArrayLike, pred: npt.ArrayLike, n: int = NUM_CLASSES) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (np.asarray(true, int), np.asarray(pred, int)), 1)
    return cm


def classification_report(true: npt.ArrayLike, pred: npt.ArrayLike, labels: Sequence[str] = EMOTIONS) -> dict[str, Any]:
    cm = confusion_matrix(true, pred, len(labels))
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm)
    per_class = {}
    for i, name in enumerate(labels):
        p = tp[i] / predicted[i] if predicted[i] else 0.0
        r = tp[i] / support[i] if support[i] else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        per_class[name] = {"precision": float(p), "recall": float(r), "f1": float(f1), "support": int(support[i])}
    total = int(cm.sum())
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "faces": total,
        "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "labels": list(labels),
    }


def report_text(report: dict[str, Any], title: str) -> str:
    lines = [
        title,
        "accuracy {:.4f} on {} faces, macro F1 {:.4f}".format(report["accuracy"], report["faces"], report["macro_f1"]),
        "{:<10} {:>9} {:>9} {:>9} {:>8}".format("class", "precision", "recall", "f1", "support"),
    ]
    for name, c in report["per_class"].items():
        lines.append(
            "{:<10} {:>9.3f} {:>9.3f} {:>9.3f} {:>8d}".format(name, c["precision"], c["recall"], c["f1"], c["support"])
        )
    lines.append("confusion matrix (rows true, columns predicted: {})".format(" ".join(report["labels"])))
    lines.extend(
        "{:<10} ".format(name) + " ".join("{:>5d}".format(v) for v in row)
        for name, row in zip(report["labels"], report["confusion_matrix"])
    )
    return "\n".join(lines)


def plot_confusion(report: dict[str, Any], path: str, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(report["confusion_matrix"], dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6), dpi=110)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    labels = report["labels"]
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (FER+ majority)")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                "{:d}\n{:.0%}".format(int(cm[i, j]), norm[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def predict_with_progress(
    predict: Callable[[np.ndarray], npt.ArrayLike],
    x: np.ndarray,
    log: Callable[[str], None] | None = None,
    chunk: int = 512,
) -> np.ndarray:
    """``predict`` over ``x`` in chunks, telling ``log`` how far it is (faces done, rate, time left)."""
    import time

    start, outs = time.time(), []
    for i in range(0, len(x), chunk):
        outs.append(np.asarray(predict(x[i : i + chunk])))
        if log is not None:
            done, elapsed = min(i + chunk, len(x)), time.time() - start
            rate = done / elapsed if elapsed > 0 else 0.0
            left = (len(x) - done) / rate if rate else 0.0
            log(
                "evaluate: {}/{} faces ({:.0%}), {:.0f} faces/s, {:.0f} s left".format(
                    done, len(x), done / float(len(x)), rate, left
                )
            )
    return np.concatenate(outs) if outs else np.zeros((0, NUM_CLASSES), np.float32)


def evaluate(
    model_path: str | os.PathLike[str],
    data_path: str | os.PathLike[str],
    split: str = "FER2013Valid",
    out_dir: str | None = None,
    limit: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score a model on a split under the majority protocol; optionally write PNG + JSON.

    ``log``: called with a progress line after every 512 faces (the CLI prints them on stderr)."""
    meta, predict = load_predictor(model_path)
    data = read_source(data_path)
    if split not in data.available_splits():
        raise ValueError("{}: no split {!r} (found {})".format(data_path, split, ", ".join(data.available_splits())))
    faces, dists, _ = data.split(split).labelled(EVAL_MODE)
    if limit:
        faces, dists = faces[:limit], dists[:limit]
    probs = predict_with_progress(predict, prepare_faces(faces, meta), log)
    labels = meta["labels"]
    report = classification_report(np.argmax(dists, 1), np.argmax(probs, 1), labels)
    title = "{} on {} ({} protocol)".format(os.path.basename(os.path.normpath(str(model_path))), split, EVAL_MODE)
    report.update({"model": str(model_path), "split": split, "protocol": EVAL_MODE})
    report["text"] = report_text(report, title)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        report["confusion_matrix_png"] = plot_confusion(report, os.path.join(out_dir, "confusion_matrix.png"), title)
        with open(os.path.join(out_dir, "report.json"), "w", encoding="utf-8") as f:
            json.dump({k: v for k, v in report.items() if k != "text"}, f, indent=2)
    return report
