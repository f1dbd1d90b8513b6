"""`fer-edge bench models`: the shipped classifiers side by side, in one run, on this machine.

For each model (a shipped name: ``default`` (= ``balanced``), ``accurate``, ``fast``, ``fast-accurate``,
``deep-emotion``, all by default; or a path) and each runtime present (ONNX Runtime, OpenVINO): per-face latency (batch 1) and faces/s at batch 16, measured in interleaved rounds (every
model and runtime once per round, so load changes on the machine hit all of them alike), the
medians over rounds, the ratio to the first model, and Valid accuracy, macro recall, the lowest
class recall and the expected calibration error (of the probabilities agents report) when FER+
data is given. Prints a Markdown table; ``--json`` keeps the numbers.
"""

import json
from typing import Any, Callable, Sequence

import numpy as np

RUNTIMES = ("onnxruntime", "openvino")


def _median_time(fn, n):
    from .bench import _timeit

    return float(np.median(_timeit(fn, n)))


def _faces(data):
    if data:
        from train.dataset import read_source

        faces, dists, _ = read_source(data).split("FER2013Valid").labelled("majority")
        return faces, dists.argmax(1)
    import cv2

    from .samples import astronaut_bgr

    face = cv2.resize(cv2.cvtColor(astronaut_bgr(), cv2.COLOR_BGR2GRAY), (48, 48))
    return np.stack([face] * 64), None


def _quality(predict, faces, labels):
    """Valid accuracy, macro recall, lowest class recall and ECE (15 bins) of the probabilities the
    classifier reports (calibrated when its metadata carries a temperature)."""
    from train.calibration import ece

    probs = np.concatenate([predict(faces[i : i + 256]) for i in range(0, len(faces), 256)])
    pred = probs.argmax(1)
    recalls = [float(np.mean(pred[labels == k] == k)) for k in range(probs.shape[1]) if np.any(labels == k)]
    return float(np.mean(pred == labels)), float(np.mean(recalls)), float(np.min(recalls)), ece(probs, labels)


def run(
    models: Sequence[str] | None = None,
    data: str | None = None,
    rounds: int = 7,
    threads: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The report dict (rows per model and runtime, markdown); ``models``: names or paths (None: every
    shipped model)."""
    from edge.backends.base import module_installed
    from edge.classifier import SHIPPED_NAMES, load_classifier, resolve_model
    from fer_edge.bench import machine

    faces, labels = _faces(data)
    one, sixteen = faces[:1], faces[:16]
    entries = []
    for name in models or SHIPPED_NAMES:
        path = resolve_model(name)
        for runtime in RUNTIMES:
            if not module_installed(runtime):
                continue
            clf = load_classifier(path, runtime=runtime)
            for _ in range(5):
                clf.predict(one), clf.predict(sixteen)
            entries.append(
                {
                    "model": name,
                    "path": path,
                    "runtime": runtime,
                    "clf": clf,
                    "lat": [],
                    "thr": [],
                    "macs": clf.meta["model"].get("macs"),
                    "parameters": clf.meta["model"].get("parameters"),
                }
            )
    for r in range(rounds):
        for e in entries:
            e["lat"].append(_median_time(lambda e=e: e["clf"].predict(one), 60) * 1000.0)
            e["thr"].append(16.0 / _median_time(lambda e=e: e["clf"].predict(sixteen), 15))
        log("round {}/{} done".format(r + 1, rounds))
    rows = []
    for e in entries:
        row = {
            "model": e["model"],
            "runtime": e["runtime"],
            "macs": e["macs"],
            "parameters": e["parameters"],
            "latency_ms": float(np.median(e["lat"])),
            "faces_per_s": float(np.median(e["thr"])),
        }
        if labels is not None:
            quality = _quality(e["clf"].predict, faces, labels)
            row["valid_accuracy"], row["macro_recall"], row["lowest_recall"], row["ece"] = quality
        rows.append(row)
        e["clf"].close()
    first: dict[str, dict[str, Any]] = {}  # runtime -> its first model's row
    for row in rows:
        base = first.setdefault(row["runtime"], row)
        row["speedup_vs_first"] = base["latency_ms"] / row["latency_ms"]
        row["throughput_vs_first"] = row["faces_per_s"] / base["faces_per_s"]
    report = {"machine": machine(), "rounds": rounds, "faces": int(len(faces)), "rows": rows}
    report["markdown"] = markdown(report, labels is not None)
    return report


def markdown(report: dict[str, Any], with_quality: bool) -> str:
    head = "| model | runtime | M MACs/face | ms/face (batch 1) | faces/s (batch 16) | vs first model |"
    sep = "|---|---|---|---|---|---|"
    if with_quality:
        head += " Valid accuracy | macro recall | lowest class | ECE (15 bins) |"
        sep += "---|---|---|---|"
    lines = [
        "{} ({}), {} interleaved rounds".format(
            report["machine"].get("cpu", "?"), report["machine"].get("cores", "?"), report["rounds"]
        ),
        "",
        head,
        sep,
    ]
    for r in report["rows"]:
        line = "| {} | {} | {:.0f} | {:.2f} | {:.0f} | {:.2f}x as fast per face, {:.2f}x the faces/s |".format(
            r["model"],
            r["runtime"],
            (r["macs"] or 0) / 1e6,
            r["latency_ms"],
            r["faces_per_s"],
            r["speedup_vs_first"],
            r["throughput_vs_first"],
        )
        if with_quality:
            line += " {:.2%} | {:.3f} | {:.3f} | {:.3f} |".format(
                r["valid_accuracy"], r["macro_recall"], r["lowest_recall"], r["ece"]
            )
        lines.append(line)
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], out_json: str | None = None) -> None:
    if out_json:
        with open(out_json, "w") as f:
            json.dump(report, f, indent=2)
