"""The framing experiment on `fer-edge bench detect`'s scenes (issue 25, item 3).

The shipped network's single (not flip-averaged) Keras copy with Deep-Emotion's transformer in front
(:mod:`train.stn_framing`), at its identity start ("before") and with the transformer weights a run
of ``python -m train.stn_framing`` saved ("after"), each run through an :class:`EmotionClassifier`
on the same scenes and detections as ``bench detect`` (the shipped detector): the framing loss
(accuracy on the true squares minus accuracy on the detector's crops, matched faces) and the end
to end accuracy, per scene kind. ``python -m fer_edge.bench_stn --weights RUN/stn.weights.h5``.
"""

import argparse
import json
import os
from typing import Any, Sequence

import numpy as np

from edge import metadata as md
from edge.backends.base import Backend
from edge.classifier import EmotionClassifier

DEFAULT_COUNTS = {"near": 60, "far": 30}


class KerasBackend(Backend):
    """A Keras model in memory as a backend (host-side experiments only; no artifact on disk)."""

    name = "keras"

    def __init__(self, model: Any, path: str, meta: dict[str, Any]) -> None:
        super().__init__(path, meta)
        self.model = model

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(self.model.predict(batch, batch_size=64, verbose=0))]


def run(
    data: str, saved_model: str, weights: str, counts: dict[str, int], seed: int = 0, min_face: int = 24
) -> dict[str, Any]:
    """{scene kind: {"before": bench detect's row, "after": the same with the trained transformer}}."""
    from edge.detect.factory import make_detector
    from train.dataset import read_source
    from train.stn_framing import load_backbone, with_transformer

    from .bench_detect import evaluate, scene_sets

    faces, dists, _ = read_source(data).split("FER2013Valid").labelled("majority")
    sets = scene_sets(faces, np.argmax(dists, axis=1), counts, seed)
    sets.pop("photo", None)  # one unlabelled face: no accuracy
    meta = md.find(saved_model)
    model = with_transformer(load_backbone(saved_model))
    detector = make_detector("blazeface-back", min_size=min_face)
    out: dict[str, Any] = {"detector": "blazeface-back (shipped default)", "counts": counts, "seed": seed}
    for label in ("before", "after"):
        if label == "after":
            model.load_weights(weights)
        classifier = EmotionClassifier(KerasBackend(model, saved_model, meta))
        for kind, scenes in sorted(sets.items()):
            out.setdefault(kind, {})[label] = evaluate(detector, scenes, classifier)
            print(kind, label, json.dumps(out[kind][label]), flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fer_edge.bench_stn", description=__doc__.split("\n")[0])
    p.add_argument("--data", default=os.path.expanduser("~/fer-edge-runs/deep-emotion/ferplus.npz"))
    p.add_argument("--saved-model", default="models/ferplus-vgg13bn-48/saved_model")
    p.add_argument("--weights", required=True, help="stn.weights.h5 from python -m train.stn_framing")
    p.add_argument("--near", type=int, default=DEFAULT_COUNTS["near"])
    p.add_argument("--far", type=int, default=DEFAULT_COUNTS["far"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the result as JSON here")
    args = p.parse_args(argv)
    result = run(args.data, args.saved_model, args.weights, {"near": args.near, "far": args.far}, args.seed)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
