"""Calibrate the shipped classifiers: fit a temperature on FER2013Valid and write it into every artifact.

    python -m convert.calibrate [--data FERPLUS] [--model accurate --model balanced ...]

For each model (a shipped name; all of ``edge.classifier.SHIPPED_NAMES`` by default): the ONNX's own probabilities on
the majority-labelled Valid faces (through the backend, so a calibration already there is not
applied twice), the temperature minimising their NLL (``train.calibration``), the ECE (15 bins)
before and after, then the ``calibration`` section written into the ONNX's embedded metadata (only
``metadata_props`` changes: the graph and weights stay byte-identical), the SavedModel's
``fer_edge.json`` (what later conversions copy), ``eval/calibration.json`` and the reliability
diagram ``eval/reliability.png``. A prior correction is measured beside it and reported, not
shipped (see the report's ``prior`` entry).
"""

import argparse
import json
import os
import sys
from typing import Any, Callable, Sequence

import numpy as np

from edge import metadata as md
from edge.calibration import SECTION, apply_temperature
from edge.classifier import NAMED_MODELS, SHIPPED_NAMES, named_model_path

from .errors import ConversionError

FIT_ON = "FER2013Valid"


def valid_set(data: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 faces, majority labels) of FER2013Valid."""
    from train.dataset import read_source
    from train.labels import EVAL_MODE

    faces, dists, _ = read_source(data).split(FIT_ON).labelled(EVAL_MODE)
    return faces, dists.argmax(1)


def raw_probabilities(onnx_path: str, faces: np.ndarray) -> np.ndarray:
    """The model's own probabilities (ONNX Runtime, no calibration applied)."""
    from edge.backends import load_backend
    from edge.preprocess import prepare_faces

    backend = load_backend(onnx_path, runtime="onnxruntime", kind=md.CLASSIFIER)
    try:
        return np.concatenate(
            [backend.infer(prepare_faces(faces[i : i + 256], backend.meta)) for i in range(0, len(faces), 256)]
        )
    finally:
        backend.close()


def fit(probs: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Temperature, ECE before/after, the 2-fold cross-fitted ECE (the optimism of fitting on Valid),
    and the prior correction's numbers (measured, not shipped)."""
    from train import calibration as cal

    temperature = cal.fit_temperature(probs, labels)
    calibrated = apply_temperature(probs, temperature)
    before, after = cal.reliability(probs, labels), cal.reliability(calibrated, labels)
    order = np.random.default_rng(seed).permutation(len(labels))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    cross = []
    for fit_half, test_half in (halves, halves[::-1]):
        t = cal.fit_temperature(probs[fit_half], labels[fit_half])
        cross.append(cal.ece(apply_temperature(probs[test_half], t), labels[test_half]))
    bias = cal.fit_prior(probs, labels, temperature)
    prior = cal.apply_prior(probs, temperature, bias)
    return {
        "temperature": round(float(temperature), 4),
        "before": before,
        "after": after,
        "nll_before": cal.nll(probs, labels),
        "nll_after": cal.nll(calibrated, labels),
        "ece_cross_fit_halves": cross,
        "prior": {
            "log_offsets": bias.tolist(),
            "ece": cal.ece(prior, labels),
            "nll": cal.nll(prior, labels),
            "accuracy": float(np.mean(prior.argmax(1) == labels)),
            "shipped": False,
        },
        "accuracy": float(np.mean(probs.argmax(1) == labels)),
        "faces": int(len(labels)),
    }


def section(result: dict[str, Any]) -> dict[str, Any]:
    """The metadata's calibration section from a ``fit`` result."""
    return {
        "temperature": result["temperature"],
        "fit_on": FIT_ON,
        "ece_before": round(result["before"]["ece"], 4),
        "ece_after": round(result["after"]["ece"], 4),
        "bins": result["after"]["bins"],
    }


def write_onnx_calibration(onnx_path: str, calibration: dict[str, Any]) -> None:
    """Set the calibration section of an ONNX's embedded metadata; every other byte of the model stays."""
    import onnx

    from edge.files import write_atomic

    from .onnx_export import embed_metadata

    model = onnx.load(onnx_path)
    graph_before = model.graph.SerializeToString()
    meta = md.loads(
        next(p.value for p in model.metadata_props if p.key == md.ONNX_METADATA_KEY), onnx_path + ": metadata"
    )
    meta[SECTION] = calibration
    embed_metadata(model, meta, layout=None)
    if model.graph.SerializeToString() != graph_before:
        raise ConversionError("{}: the graph changed while writing metadata".format(onnx_path))
    write_atomic(onnx_path, model.SerializeToString())


def calibrate_model(name: str, faces: np.ndarray, labels: np.ndarray, log: Callable[[str], None] = print) -> dict:
    from edge.shipped import MODELS_DIR
    from train import calibration as cal

    onnx_path = named_model_path(name)
    folder = os.path.join(MODELS_DIR, NAMED_MODELS[name])
    result = fit(raw_probabilities(onnx_path, faces), labels)
    calibration = section(result)
    write_onnx_calibration(onnx_path, calibration)
    saved = os.path.join(folder, "saved_model", md.METADATA_FILENAME)
    if os.path.isfile(saved):
        meta = md.read(saved)
        meta[SECTION] = calibration
        md.write(meta, saved)
    evaluation = os.path.join(folder, "eval")
    os.makedirs(evaluation, exist_ok=True)
    with open(os.path.join(evaluation, "calibration.json"), "w", encoding="utf-8") as handle:
        json.dump(dict(result, model=NAMED_MODELS[name], section=calibration), handle, indent=2, sort_keys=True)
        handle.write("\n")
    cal.plot_reliability(
        result["before"],
        result["after"],
        os.path.join(evaluation, "reliability.png"),
        "{} on {} ({} faces): temperature {:.3f} fit on the same faces".format(
            NAMED_MODELS[name], FIT_ON, result["faces"], result["temperature"]
        ),
    )
    log(
        "{}: T={:.4f} ECE {:.4f} -> {:.4f} (2-fold cross-fit {:.4f}, {:.4f}); prior correction: ECE {:.4f}, "
        "accuracy {:.4f} vs {:.4f} (not shipped)".format(
            name,
            result["temperature"],
            result["before"]["ece"],
            result["after"]["ece"],
            result["ece_cross_fit_halves"][0],
            result["ece_cross_fit_halves"][1],
            result["prior"]["ece"],
            result["prior"]["accuracy"],
            result["accuracy"],
        )
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    from .parity import default_data_path

    parser = argparse.ArgumentParser(prog="python -m convert.calibrate", description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="FER+ data (.tar.gz, folder or .npz; default: $FER_EDGE_DATA)")
    parser.add_argument("--model", action="append", choices=list(NAMED_MODELS), help="shipped model(s) (default: all)")
    args = parser.parse_args(argv)
    data = args.data or default_data_path()
    if not data:
        print("calibrate: error: no FER+ data: give --data or set $FER_EDGE_DATA", file=sys.stderr)
        return 2
    try:
        faces, labels = valid_set(data)
        for name in args.model or SHIPPED_NAMES:
            calibrate_model(name, faces, labels)
    except (ConversionError, md.MetadataError, ValueError) as exc:
        print("calibrate: error: {}".format(exc), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
