"""Fitting a classifier's calibration on held-out faces: a temperature (and, to compare, a prior
correction), the expected calibration error and the reliability diagram.

The shipped ONNX gives probabilities, so everything here works on log-probabilities: a temperature T
turns p into p_i^(1/T) renormalised (``edge.calibration.apply_temperature``, what agents apply).
"""

from typing import Any

import numpy as np
import numpy.typing as npt

from edge.calibration import FLOOR, apply_temperature

BINS = 15
# The temperature is searched on log T within these bounds (golden section on a convex NLL).
T_RANGE = (0.05, 20.0)


def nll(probs: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Mean negative log-likelihood of the true labels."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=int)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], FLOOR, 1.0))))


def fit_temperature(probs: npt.ArrayLike, labels: npt.ArrayLike, tol: float = 1e-5) -> float:
    """The temperature minimising the NLL of ``labels`` under ``probs`` tempered (golden section on log T)."""

    def loss(log_t: float) -> float:
        return nll(apply_temperature(probs, float(np.exp(log_t))), labels)

    lo, hi = np.log(T_RANGE[0]), np.log(T_RANGE[1])
    ratio = (np.sqrt(5.0) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    while hi - lo > tol:
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    return float(np.exp((lo + hi) / 2))


def fit_prior(probs: npt.ArrayLike, labels: npt.ArrayLike, temperature: float, steps: int = 2000) -> np.ndarray:
    """Per-class log-prior offsets b added to the tempered log-probabilities, minimising the NLL
    (gradient descent; the loss is convex in b). Measured against the temperature alone."""
    logp = np.log(np.clip(np.asarray(apply_temperature(probs, temperature), dtype=np.float64), FLOOR, 1.0))
    y = np.asarray(labels, dtype=int)
    onehot = np.eye(logp.shape[1])[y]
    bias = np.zeros(logp.shape[1])
    for _ in range(steps):
        bias -= 1.0 * (_softmax(logp + bias) - onehot).mean(axis=0)
    return bias - bias.mean()


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    q = np.exp(z)
    return q / q.sum(axis=1, keepdims=True)


def apply_prior(probs: npt.ArrayLike, temperature: float, bias: np.ndarray) -> np.ndarray:
    return _softmax(
        np.log(np.clip(np.asarray(apply_temperature(probs, temperature), dtype=np.float64), FLOOR, 1.0)) + bias
    )


def reliability(probs: npt.ArrayLike, labels: npt.ArrayLike, bins: int = BINS) -> dict[str, Any]:
    """Top-1 confidence in ``bins`` equal-width bins: per bin count, mean confidence, accuracy; and the
    expected calibration error (the count-weighted mean |accuracy - confidence|)."""
    p = np.asarray(probs, dtype=np.float64)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == np.asarray(labels, dtype=int)).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    conf_sum = np.bincount(index, weights=conf, minlength=bins)
    acc_sum = np.bincount(index, weights=correct, minlength=bins)
    safe = np.maximum(count, 1)
    ece = float(np.sum(np.abs(acc_sum - conf_sum)) / max(len(conf), 1))
    return {
        "bins": bins,
        "count": count.tolist(),
        "confidence": (conf_sum / safe).tolist(),
        "accuracy": (acc_sum / safe).tolist(),
        "ece": ece,
        "mean_confidence": float(conf.mean()) if len(conf) else 0.0,
        "accuracy_overall": float(correct.mean()) if len(conf) else 0.0,
    }


def ece(probs: npt.ArrayLike, labels: npt.ArrayLike, bins: int = BINS) -> float:
    """Expected calibration error of the top-1 confidence (``bins`` equal-width bins)."""
    return float(reliability(probs, labels, bins)["ece"])


def plot_reliability(before: dict[str, Any], after: dict[str, Any], path: str, title: str) -> str:
    """Reliability diagram (PNG): accuracy per confidence bin, uncalibrated and calibrated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), dpi=110, sharey=True)
    width = 1.0 / before["bins"]
    centers = (np.arange(before["bins"]) + 0.5) * width
    for ax, rel, name in ((axes[0], before, "as the network gives them"), (axes[1], after, "calibrated")):
        count = np.asarray(rel["count"])
        shown = count > 0
        ax.bar(centers[shown], np.asarray(rel["accuracy"])[shown], width=width * 0.9, color="#4c72b0", label="accuracy")
        ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
        ax.plot(
            np.asarray(rel["confidence"])[shown],
            np.asarray(rel["accuracy"])[shown],
            "o",
            ms=3,
            color="#dd8452",
            label="(mean confidence, accuracy)",
        )
        for x, n in zip(centers[shown], count[shown]):
            ax.text(x, 0.02, str(int(n)), ha="center", va="bottom", fontsize=6, rotation=90, color="white")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("top-1 confidence ({} bins; faces per bin in the bars)".format(rel["bins"]))
        ax.set_title("{}: ECE {:.3f}".format(name, rel["ece"]), fontsize=9)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
