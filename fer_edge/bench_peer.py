"""Runs inside the peer's virtual environment (the `fer` package): never imports fer-edge.

    python bench_peer.py classify FACES.npy OUT.npy   # FER+ faces -> fer's 7 probabilities
    python bench_peer.py agent VIDEO                  # detect_emotions on every frame -> JSON
    python bench_peer.py scenes FRAMES.npz OUT.json   # detect_emotions on benchmark scenes -> boxes, labels, ms

fer's pipeline as its users run it: ``FER()`` (Haar cascade, mini-Xception, TFLite by default).
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


def classify(faces_path: str, out_path: str) -> None:
    import cv2
    import numpy as np
    from fer.fer import FER

    detector = FER()
    faces = np.load(faces_path)
    size = (64, 64)  # fer's emotion model input
    batch = np.array([cv2.resize(f, size) for f in faces], dtype="float32")
    batch = (batch / 255.0 - 0.5) * 2.0  # fer's own preprocessing (detect_emotions)
    probs = np.concatenate([detector._classify_emotions(batch[i : i + 64]) for i in range(0, len(batch), 64)])
    np.save(out_path, probs.astype("float32"))
    print(json.dumps({"labels": [FER._get_labels()[i] for i in range(7)]}))


def agent(video: str) -> None:
    import cv2
    from fer.fer import FER

    detector = FER()
    capture = cv2.VideoCapture(video)
    frames = faces = 0
    ok, image = capture.read()
    detector.detect_emotions(image)  # warm-up (model load), not timed
    capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
    cpu0 = time.process_time()
    start = time.perf_counter()
    while True:
        ok, image = capture.read()
        if not ok:
            break
        faces += len(detector.detect_emotions(image))
        frames += 1
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "frames": frames,
                "faces": faces,
                "seconds": seconds,
                "fps": frames / seconds,
                "cpu_percent": 100.0 * (time.process_time() - cpu0) / seconds,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


def scenes(frames_path: str, out_path: str) -> None:
    """fer's detect_emotions on each frame of an .npz (keys frame_0, frame_1, ...): boxes, top emotion, ms."""
    import numpy as np
    from fer.fer import FER

    detector = FER()
    data = np.load(frames_path)
    names = sorted(data.files, key=lambda k: int(k.split("_")[1]))
    detector.detect_emotions(data[names[0]])  # warm-up
    out = []
    for name in names:
        image = data[name]
        start = time.perf_counter()
        found = detector.detect_emotions(image)
        ms = 1000.0 * (time.perf_counter() - start)
        out.append(
            {
                "ms": ms,
                "faces": [
                    {"box": [int(v) for v in f["box"]], "emotion": max(f["emotions"], key=f["emotions"].get)}
                    for f in found
                ],
            }
        )
    with open(out_path, "w") as f:
        json.dump(out, f)
    print(json.dumps({"frames": len(out)}))


if __name__ == "__main__":
    if sys.argv[1] == "classify":
        classify(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "scenes":
        scenes(sys.argv[2], sys.argv[3])
    else:
        agent(sys.argv[2])
