"""One measured agent run in a process of its own: ``python -m fer_edge.bench_child VIDEO [MODEL]``.

The real agent loop (edge.agent.service.serve) on every frame of the video, publishing to a bounded
in-memory publisher (the final stats message gives the per-stage ms), then one JSON line: fps, per-stage ms, peak RSS, CPU use.
"""

import json
import sys
import time


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries that across execve,
    so a child started by a big parent would report the parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main() -> None:
    from edge.agent.service import serve
    from edge.config.agent import load_config

    video = sys.argv[1]
    overrides = {"source": video, "broker": "", "stats_interval": 0.0, "device_id": "bench"}
    if len(sys.argv) > 2:
        overrides["model"] = sys.argv[2]
    config = load_config(None, env={}, overrides=overrides)
    from edge.classifier import load_classifier

    classifier = load_classifier(config["model"] or None)
    import numpy as np

    classifier.predict(np.zeros((1, 48, 48), np.uint8))  # warm-up, not timed
    from edge.delivery.base import MemoryPublisher

    publisher = MemoryPublisher("bench", keep=1)  # serializes like a real publisher, keeps nothing
    cpu0 = time.process_time()
    start = time.perf_counter()
    summary = serve(config, classifier=classifier, publisher=publisher)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "frames": summary["frames"],
                "faces": summary["faces"],
                "seconds": seconds,
                "fps": summary["frames"] / seconds,
                "stage_ms": publisher.stats[-1]["stage_ms"],
                "cpu_percent": 100.0 * (time.process_time() - cpu0) / seconds,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


if __name__ == "__main__":
    main()
