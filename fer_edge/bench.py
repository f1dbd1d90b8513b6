"""`fer-edge bench`: speed, memory and accuracy, side by side with the `fer` package, in one run.

Classifier: per-face latency (batch 1: median, p95) and throughput (batch 16) for every runtime
present, on the same real faces; accuracy on a FERPlus split (majority protocol) with --data.
Agent: end-to-end FPS, per-stage ms, peak RSS and CPU of the agent process on generated videos
(640x480 and 1280x720, 1 and 4 faces). Peer (--peer fer): the same for the `fer` package
(Haar + mini-Xception), installed into .venv-peer, reported as ratios ours/peer.
"""

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_VENV = os.path.join(REPO, ".venv-peer")
PEER_PACKAGES = ["fer==25.10.3"]
# fer's Haar + mini-Xception path needs only these (its torch/moviepy extras are for MTCNN and video helpers).
PEER_DEPS = ["tensorflow-cpu>=2.16,<2.22", "opencv-python-headless>=4.5,<5", "requests", "pillow", "setuptools<81"]
# fer's labels -> FER+ labels (fer has no contempt)
PEER_TO_FERPLUS = {
    "angry": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happiness",
    "sad": "sadness",
    "surprise": "surprise",
    "neutral": "neutral",
}
VIDEOS = ((640, 480, 1), (640, 480, 4), (1280, 720, 1), (1280, 720, 4))


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()}


def _timeit(fn, repeat):
    times: list[float] = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return np.asarray(times)


def classifier_runtimes(
    model_path: str,
) -> list[tuple[str, Callable[[np.ndarray], np.ndarray] | None, dict[str, Any] | None]]:
    """(name, predict function on uint8 faces) for every runtime present here."""
    from edge.backends.base import module_installed
    from edge.classifier import load_classifier

    out = []
    for runtime in ("onnxruntime", "openvino"):
        if module_installed(runtime):
            clf = load_classifier(model_path, runtime=runtime)
            out.append((runtime, clf.predict, clf.meta))
    saved = os.path.join(os.path.dirname(os.path.dirname(model_path)), "saved_model")
    if os.path.isdir(saved) and module_installed("tensorflow"):
        from edge.preprocess import prepare_faces
        from train.predictors import load_predictor

        meta, predict = load_predictor(saved)
        out.append(("tensorflow-savedmodel", lambda faces: predict(prepare_faces(faces, meta)), meta))
    if module_installed("tensorrt"):
        out.append(("tensorrt", None, None))  # measured on the device: see docs/jetson.md
    return out


def bench_classifier(
    model_path: str, faces: np.ndarray, labels: np.ndarray | None, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, predict, _meta in classifier_runtimes(model_path):
        if predict is None:
            rows.append({"runtime": name, "note": "TensorRT present but engines are benchmarked on the device"})
            continue
        one, sixteen = faces[:1], faces[:16]
        for _ in range(5):
            predict(one), predict(sixteen)
        lat = _timeit(lambda predict=predict, one=one: predict(one), 200) * 1000.0
        thr = _timeit(lambda predict=predict, sixteen=sixteen: predict(sixteen), 50)
        row: dict[str, Any] = {
            "runtime": name,
            "latency_ms_median": float(np.median(lat)),
            "latency_ms_p95": float(np.percentile(lat, 95)),
            "throughput_faces_per_s": float(16 / np.median(thr)),
        }
        if labels is not None:
            probs = np.concatenate([predict(faces[i : i + 256]) for i in range(0, len(faces), 256)])
            row["valid_accuracy"] = float(np.mean(probs.argmax(1) == labels))
        log(
            "classifier {runtime}: {latency_ms_median:.2f} ms/face (p95 {latency_ms_p95:.2f}), "
            "{throughput_faces_per_s:.0f} faces/s at batch 16".format(**row)
        )
        rows.append(row)
    return rows


def make_videos(folder: str, frames: int) -> list[tuple[str, str]]:
    from .samples import make_sample_video

    out = []
    for w, h, n in VIDEOS:
        path = os.path.join(folder, "bench-{}x{}-{}face.mp4".format(w, h, n))
        if not os.path.isfile(path):
            make_sample_video(path, frames=frames, width=w, height=h, faces=n)
        out.append(("{}x{} {} face{}".format(w, h, n, "s" if n > 1 else ""), path))
    return out


def _run_json(cmd, env=None):
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError("{} failed: {}".format(" ".join(cmd[:3]), proc.stderr[-2000:]))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ensure_peer(log: Callable[[str], None]) -> str:
    python = os.path.join(PEER_VENV, "bin", "python")
    stamp = os.path.join(PEER_VENV, ".installed")
    if not os.path.isfile(stamp):
        log("installing the peer (fer) into {}".format(PEER_VENV))
        subprocess.run([sys.executable, "-m", "venv", PEER_VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps"] + PEER_PACKAGES, check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet"] + PEER_DEPS, check=True)
        open(stamp, "w").close()
    return python


def peer_env() -> dict[str, str]:
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def bench_peer_classifier(
    python: str, faces: np.ndarray, labels: np.ndarray, ferplus_labels: list[str], tmp: str
) -> dict[str, float]:
    np.save(os.path.join(tmp, "faces.npy"), faces)
    out = os.path.join(tmp, "peer_probs.npy")
    info = _run_json(
        [python, os.path.join(REPO, "fer_edge", "bench_peer.py"), "classify", os.path.join(tmp, "faces.npy"), out],
        env=peer_env(),
    )
    probs = np.load(out)
    mapped = np.array([ferplus_labels.index(PEER_TO_FERPLUS[info["labels"][i]]) for i in probs.argmax(1)])
    no_contempt = labels != ferplus_labels.index("contempt")
    return {
        "valid_accuracy": float(np.mean(mapped == labels)),
        "valid_accuracy_without_contempt": float(np.mean(mapped[no_contempt] == labels[no_contempt])),
    }


def markdown(report: dict[str, Any]) -> str:
    lines = ["Measured by `fer-edge bench` on {cpu} ({cores} cores), Python {python}.".format(**report["machine"]), ""]
    lines += [
        "| classifier runtime | ms/face (batch 1, median) | p95 | faces/s (batch 16) | Valid accuracy |",
        "|---|---|---|---|---|",
    ]
    for r in report["classifier"]:
        if "latency_ms_median" in r:
            lines.append(
                "| {} | {:.2f} | {:.2f} | {:.0f} | {} |".format(
                    r["runtime"],
                    r["latency_ms_median"],
                    r["latency_ms_p95"],
                    r["throughput_faces_per_s"],
                    "{:.2%}".format(r["valid_accuracy"]) if "valid_accuracy" in r else "-",
                )
            )
    if report.get("peer_classifier"):
        lines.append(
            "| fer (peer, mini-Xception) | - | - | - | {:.2%} ({:.2%} without contempt) |".format(
                report["peer_classifier"]["valid_accuracy"],
                report["peer_classifier"]["valid_accuracy_without_contempt"],
            )
        )
    lines += [
        "",
        "| agent on video | fer-edge FPS | peer FPS | ratio | fer-edge peak RSS MB | peer RSS MB | "
        "fer-edge CPU % | ms/frame detect / infer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["agent"]:
        ours, peer = row["fer_edge"], row.get("peer")
        lines.append(
            "| {} | {:.1f} | {} | {} | {:.0f} | {} | {:.0f} | {:.1f} / {:.1f} |".format(
                row["video"],
                ours["fps"],
                "{:.1f}".format(peer["fps"]) if peer else "-",
                "{:.2f}x".format(ours["fps"] / peer["fps"]) if peer else "-",
                ours["peak_rss_mb"],
                "{:.0f}".format(peer["peak_rss_mb"]) if peer else "-",
                ours["cpu_percent"],
                ours["stage_ms"].get("detect", 0),
                ours["stage_ms"].get("infer", 0),
            )
        )
    proc = report.get("process")
    if proc:
        lines += [
            "",
            "Whole process on {} (start-up included, median of {} interleaved runs): `fer-edge run` {:.1f} s{}.".format(
                proc["video"],
                len(proc["fer_edge_runs"]),
                proc["fer_edge_s"],
                ", the peer {:.1f} s: ratio {:.2f}x".format(proc["peer_s"], proc["ratio"]) if "peer_s" in proc else "",
            ),
        ]
    return "\n".join(lines) + "\n"


PROCESS_VIDEO = (640, 480, 2)  # the whole-process comparison: a 640x480 video with two faces


def process_walls(video: str, peer_python: str | None, repeats: int = 3) -> dict[str, Any]:
    """Wall time of whole processes on ``video``, interleaved: `fer-edge run` (its default command
    line but no broker) and the peer's script (fer's FER() on every frame), start-up included
    (``fer_edge.bench_video.run_walls``)."""
    from .bench_video import run_walls

    walls = run_walls({"fer_edge": (video, ())}, repeats, {"peer": (peer_python, video)} if peer_python else None)
    out: dict[str, Any] = {
        "video": os.path.basename(video),
        "fer_edge_s": walls["fer_edge"]["wall_s"],
        "fer_edge_runs": walls["fer_edge"]["runs"],
    }
    if "peer" in walls:
        out.update(peer_s=walls["peer"]["wall_s"], peer_runs=walls["peer"]["runs"])
        out["ratio"] = out["fer_edge_s"] / out["peer_s"]
    return out


def run(
    model: str | None = None,
    data: str | None = None,
    peer: str | None = None,
    frames: int = 90,
    out_json: str | None = None,
    out_md: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    from edge.classifier import default_model_path
    from edge.labels import EMOTIONS

    model = model or default_model_path()
    report: dict[str, Any] = {"machine": machine(), "model": model, "classifier": [], "agent": []}
    from edge.backends import artifact_metadata

    meta = artifact_metadata(model)
    report["model_info"] = {
        "macs": meta["model"].get("macs"),
        "parameters": meta["model"].get("parameters"),
        "onnx_bytes": os.path.getsize(model),
    }
    labels = None
    if data:
        from train.dataset import read_source

        faces, dists, _ = read_source(data).split("FER2013Valid").labelled("majority")
        labels = dists.argmax(1)
    else:
        import cv2

        from .samples import astronaut_bgr

        faces = np.stack([cv2.resize(cv2.cvtColor(astronaut_bgr(), cv2.COLOR_BGR2GRAY), (48, 48))] * 64)
    report["classifier"] = bench_classifier(model, faces, labels, log)
    python = ensure_peer(log) if peer == "fer" else None
    with tempfile.TemporaryDirectory() as tmp:
        if python and labels is not None:
            report["peer_classifier"] = bench_peer_classifier(python, faces, labels, list(EMOTIONS), tmp)
            log("peer classifier on Valid: {valid_accuracy:.2%}".format(**report["peer_classifier"]))
        video_dir = os.path.join(REPO, "data", "bench")
        os.makedirs(video_dir, exist_ok=True)
        for label, video in make_videos(video_dir, frames):
            row = {"video": label, "fer_edge": _run_json([sys.executable, "-m", "fer_edge.bench_child", video, model])}
            if python:
                row["peer"] = _run_json(
                    [python, os.path.join(REPO, "fer_edge", "bench_peer.py"), "agent", video], env=peer_env()
                )
                row["fps_ratio"] = row["fer_edge"]["fps"] / row["peer"]["fps"]
            log(
                "agent {}: {:.1f} fps{}".format(
                    label,
                    row["fer_edge"]["fps"],
                    ", peer {:.1f} fps ({:.2f}x)".format(row["peer"]["fps"], row["fps_ratio"]) if python else "",
                )
            )
            report["agent"].append(row)
        from .samples import make_sample_video

        w, h, n = PROCESS_VIDEO
        video = os.path.join(video_dir, "process-{}x{}-{}faces.mp4".format(w, h, n))
        if not os.path.isfile(video):
            make_sample_video(video, frames=frames, width=w, height=h, faces=n)
        report["process"] = process_walls(video, python)
        log(
            "whole process on {}: fer-edge run {:.1f} s{}".format(
                report["process"]["video"],
                report["process"]["fer_edge_s"],
                ", peer {:.1f} s ({:.2f}x)".format(report["process"]["peer_s"], report["process"]["ratio"])
                if python
                else "",
            )
        )
    report["markdown"] = markdown(report)
    return write_report(report, out_json, out_md)


def write_report(report: dict[str, Any], out_json: str | None = None, out_md: str | None = None) -> dict[str, Any]:
    """The report as JSON and its table as Markdown, where asked; returns the report."""
    if out_json:
        with open(out_json, "w") as f:
            json.dump(report, f, indent=2)
    if out_md:
        with open(out_md, "w") as f:
            f.write(report["markdown"])
    return report
