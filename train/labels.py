"""FER+ label processing, exactly as Microsoft's FERPlus reference (src/ferplus.py) defines it.

Votes are the 10 counts of a label row: 8 emotions, unknown, NF (not a face).

* Votes of 1 are outliers and are dropped first.
* majority: one emotion holds more than half of the remaining votes, else unknown.
* probability / crossentropy: take the top-voted classes (ties together) until 75% of the votes
  are covered, at most 3 classes; if the result covers at most half of the votes, or unknown/NF
  ties in, the sample is unknown.
* multi_target: every class with at least 30% of the votes; unknown if they cover at most half.

Samples whose processed distribution peaks on unknown or NF are dropped; the rest are
renormalised over the 8 emotions. The per-epoch training target then depends on the mode
(``training_target``): majority/crossentropy use the distribution, probability samples one
class from it, multi_target marks every present class (with a small epsilon).
Validation and test are always processed in majority mode.
"""

from typing import Sequence

import numpy as np
import numpy.typing as npt

from edge.labels import NUM_CLASSES, NUM_VOTES

MODES = ("majority", "probability", "crossentropy", "multi_target")
EVAL_MODE = "majority"
MULTI_TARGET_THRESHOLD = 0.3
MULTI_TARGET_EPSILON = 0.001

_EPS = np.finfo(float).eps


def _unknown():
    out = [0.0] * NUM_VOTES
    out[-2] = 1.0
    return out


def process_votes(votes: Sequence[float] | np.ndarray, mode: str) -> list[float]:
    """One row of 10 votes -> 10-vector distribution (emotions, unknown, NF), reference rules."""
    if mode not in MODES:
        raise ValueError("unknown label mode {!r}; expected one of {}".format(mode, MODES))
    raw = [float(v) for v in votes]
    if len(raw) != NUM_VOTES:
        raise ValueError("expected {} votes, got {}".format(NUM_VOTES, len(raw)))
    size = len(raw)
    for i in range(size):
        if raw[i] < 1.0 + _EPS:
            raw[i] = 0.0
    total = sum(raw)
    emotion = [0.0] * size
    if mode == "majority":
        maxval = max(raw)
        if maxval > 0.5 * total:
            emotion[int(np.argmax(raw))] = maxval
        else:
            emotion = _unknown()
    elif mode in ("probability", "crossentropy"):
        sum_part = 0.0
        count = 0
        valid = True
        while sum_part < 0.75 * total and count < 3 and valid:
            maxval = max(raw)
            for i in range(size):
                if raw[i] == maxval:
                    emotion[i] = maxval
                    raw[i] = 0.0
                    sum_part += emotion[i]
                    count += 1
                    if i >= NUM_CLASSES:  # unknown or NF tie with the top emotions
                        valid = False
                        if sum(emotion) > maxval:  # emotions ahead of unknown/NF
                            emotion[i] = 0.0
                            count -= 1
                        break
        if sum(emotion) <= 0.5 * total or count > 3:
            emotion = _unknown()
    else:  # multi_target
        for i in range(size):
            if raw[i] >= MULTI_TARGET_THRESHOLD * total:
                emotion[i] = raw[i]
        if sum(emotion) <= 0.5 * total:
            emotion = _unknown()
    s = sum(emotion)
    return [e / s for e in emotion]


def label_distribution(votes: Sequence[float] | np.ndarray, mode: str) -> list[float] | None:
    """One row of votes -> 8-class distribution, or None when the sample is unknown / NF."""
    dist = process_votes(votes, mode)
    if int(np.argmax(dist)) >= NUM_CLASSES:
        return None
    emo = dist[:NUM_CLASSES]
    s = sum(emo)
    return [e / s for e in emo]


def labels_for(votes: npt.ArrayLike, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Votes [N, 10] -> (kept indices [K], distributions float32 [K, 8]) under ``mode``."""
    keep, dists = [], []
    for i, row in enumerate(np.asarray(votes)):
        dist = label_distribution(row, mode)
        if dist is not None:
            keep.append(i)
            dists.append(dist)
    return (np.asarray(keep, dtype=np.int64), np.asarray(dists, dtype=np.float32).reshape(-1, NUM_CLASSES))


def training_target(dists: np.ndarray, mode: str, rng: np.random.Generator) -> np.ndarray:
    """Per-epoch training targets [K, 8] from the distributions, as the reference trains."""
    if mode in ("majority", "crossentropy"):
        return dists
    if mode == "probability":
        cum = np.cumsum(dists, axis=1)
        u = rng.random((len(dists), 1))
        idx = np.minimum((u > cum).sum(axis=1), NUM_CLASSES - 1)
        out = np.zeros_like(dists)
        out[np.arange(len(dists)), idx] = 1.0
        return out
    if mode == "multi_target":
        present = (dists > 0).astype(np.float32)
        return (1.0 - MULTI_TARGET_EPSILON) * present + MULTI_TARGET_EPSILON
    raise ValueError("unknown label mode {!r}".format(mode))


def class_counts(dists: np.ndarray) -> np.ndarray:
    """Per-class counts of the argmax of each distribution."""
    return (
        np.bincount(np.argmax(dists, axis=1), minlength=NUM_CLASSES)
        if len(dists)
        else np.zeros(NUM_CLASSES, dtype=np.int64)
    )
