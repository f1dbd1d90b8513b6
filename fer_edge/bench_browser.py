"""In-browser ms per frame: the page's pipeline (onnxruntime-web, wasm) in headless Chromium on an image, run
``frames`` times after a warm-up run; part of `fer-edge bench serve` (the same image as the server's numbers)."""

import os
import tempfile
from typing import Any

import numpy as np


def available() -> str | None:
    """None when the in-browser benchmark can run here, else why not."""
    from .web.browser import why_unavailable
    from .web.vendor import VendorMissing, vendor_files

    why = why_unavailable()
    if why is not None:
        return why
    try:
        vendor_files()
    except VendorMissing as exc:
        return str(exc)
    return None


def run(model: str | None, jpeg: bytes, frames: int = 20) -> dict[str, Any]:
    """p50/p95 ms per frame (and per stage at the median) of the in-browser pipeline on the ``jpeg`` image."""
    from edge.pipeline import FaceEmotionPipeline

    from .web.check import browser_faces

    pipeline = FaceEmotionPipeline(model)
    handle, path = tempfile.mkstemp(suffix=".jpg")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(jpeg)
        run_ = browser_faces(pipeline, [path], repeat=frames + 1, timeout=600.0)
    finally:
        os.unlink(path)
    result = run_.results[0]
    times = np.asarray(result["times"][1:])  # the first run warms the wasm kernels up
    stages = result["stages"][1:]
    return {
        "browser": run_.product,
        "runtime": result["runtime"],
        "frames": int(len(times)),
        "faces": len(result["faces"]),
        "ms_p50": round(float(np.percentile(times, 50)), 1),
        "ms_p95": round(float(np.percentile(times, 95)), 1),
        "stage_ms_p50": dict((k, round(float(np.median([s[k] for s in stages])), 1)) for k in sorted(stages[0])),
    }


def markdown(report: dict[str, Any]) -> str:
    stages = ", ".join("{} {}".format(k, v) for k, v in report["stage_ms_p50"].items())
    return (
        "In the browser ({browser}, {runtime}): p50 {ms_p50} ms, p95 {ms_p95} ms per frame over {frames} frames, "
        "{faces} faces (stage medians, ms: {stages})".format(stages=stages, **report)
    )
