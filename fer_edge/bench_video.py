"""`fer-edge bench detect --video`: detectors the way a video sees them, and whole `fer-edge run` walls.

Clips: each benchmark scene (``fer_edge.scenes``) held for ``hold`` frames with fresh sensor noise
on every frame (Gaussian, sigma 2 grey levels), or moved (``moving``: the whole scene shifts a few
pixels a frame, so a followed face must be re-found where it went). A stateful detector (the
default: ``edge.detect.scheduled.ScheduledDetector``) starts fresh on each clip. Per frame after the
first ``settle`` frames: recall at IoU 0.3, false positives per frame, and the per-frame label
(faces found and labelled right over all faces); the discovery latency of a face is the first
frame it is found on (a face never found counts as ``hold``). ms per frame: median over clips.

``run_walls``: wall time of whole `fer-edge run` processes (start-up included) on two videos of
the same length, interleaved (A B A B ...), medians.
"""

import functools
import os
import statistics
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .scenes import Scene

if TYPE_CHECKING:
    from edge.classifier import EmotionClassifier
    from edge.detect.base import FaceDetector

NOISE_SIGMA = 2.0
SHIFT_PX = 3  # pixels per frame a moving clip's scene shifts (right and down, wrapping)

MatchFn = Callable[[Sequence[Any], Sequence[Sequence[float]]], dict[int, int]]


def clip_frames(scene: Scene, hold: int, seed: int, moving: bool = False) -> list[tuple[np.ndarray, list[Any]]]:
    """The ``hold`` frames of a clip and each frame's true faces (moved with the scene when ``moving``)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(hold):
        image, faces = scene.image, list(scene.faces)
        if moving:
            dx = dy = SHIFT_PX * k
            height, width = image.shape[:2]
            image = np.roll(image, (dy % height, dx % width), axis=(0, 1))
            faces = [f._replace(box=(f.box[0] + dx, f.box[1] + dy, f.box[2], f.box[3])) for f in faces]
            faces = [f for f in faces if f.box[0] + f.box[2] <= width and f.box[1] + f.box[3] <= height]
        noise = rng.normal(0.0, NOISE_SIGMA, image.shape)
        out.append((np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8), faces))
    return out


def evaluate_clips(
    make: Callable[[], "FaceDetector"],
    scenes: Sequence[Scene],
    match: MatchFn,
    hold: int = 20,
    settle: int = 15,
    moving: bool = False,
    classifier: "EmotionClassifier | None" = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-frame recall, false positives and label accuracy after ``settle`` frames, discovery latency
    (frames) and ms per frame of a detector made fresh (``make()``) for each clip."""
    from edge.detect.crops import face_crop

    found = total = false_pos = correct = labelled = frames = 0
    latencies: list[int] = []
    ms: list[float] = []
    for n, scene in enumerate(scenes):
        detector = make()
        first: dict[int, int] = {}
        clip = clip_frames(scene, hold, seed + n, moving)
        start = time.perf_counter()
        for k, (image, faces) in enumerate(clip):
            dets = detector.detect(image)
            pairs = match(faces, [d.box for d in dets])
            for i in pairs:
                first.setdefault(i, k)
            if k < settle:
                continue
            frames += 1
            total += len(faces)
            found += len(pairs)
            false_pos += len(dets) - len(pairs)
            if classifier is not None:
                matched = [(faces[i], dets[j]) for i, j in sorted(pairs.items()) if faces[i].label >= 0]
                labelled += sum(1 for f in faces if f.label >= 0)
                if matched:
                    probs = classifier.predict([face_crop(image, d) for _, d in matched])
                    correct += int(sum(int(np.argmax(p)) == f.label for (f, _), p in zip(matched, probs)))
        ms.append(1000.0 * (time.perf_counter() - start) / len(clip))
        latencies += [first.get(i, hold) for i in range(len(scene.faces))]
    row: dict[str, Any] = {
        "clips": len(scenes),
        "hold": hold,
        "settle": settle,
        "moving": moving,
        "recall": found / float(total) if total else float("nan"),
        "false_positives_per_frame": false_pos / float(frames) if frames else float("nan"),
        "latency_median": float(statistics.median(latencies)) if latencies else float("nan"),
        "latency_p90": float(np.percentile(latencies, 90)) if latencies else float("nan"),
        "never_found": sum(1 for v in latencies if v >= hold),
        "ms_per_frame": float(statistics.median(ms)) if ms else float("nan"),
    }
    if classifier is not None and labelled:
        row["end_to_end_accuracy"] = correct / float(labelled)
    return row


def write_clip_video(
    path: str, scenes: Sequence[Scene], hold: int, fps: int = 30, seed: int = 0, limit: int | None = None
) -> str:
    """An mp4 of the scenes, each held ``hold`` frames (with noise), at most ``limit`` frames: a test
    video for `fer-edge run`."""
    import cv2

    height, width = scenes[0].image.shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError("{}: cannot write an mp4v video here".format(path))
    written = 0
    try:
        for n, scene in enumerate(scenes):
            for image, _ in clip_frames(scene, hold, seed + n):
                if limit is not None and written >= limit:
                    return path
                writer.write(image)
                written += 1
    finally:
        writer.release()
    return path


PEER_PROGRAM = "the fer package (peer)"  # the flags cell of a peer row


def run_walls(
    runs: dict[str, tuple[str, Sequence[str]]], repeats: int = 3, peer: dict[str, tuple[str, str]] | None = None
) -> dict[str, dict[str, Any]]:
    """Median wall seconds of whole processes, interleaved: ``runs`` is {name: (video, extra flags)} of
    `fer-edge run`; ``peer`` {name: (peer python, video)} of the `fer` package's script (fer's
    detect_emotions on every frame, ``fer_edge/bench_peer.py agent``), in the same rounds."""
    cmds: dict[str, tuple[str, list[str], str]] = {}
    for name, (video, extra) in runs.items():
        cmd = [sys.executable, "-m", "fer_edge", "run", "--source", video, "--no-embedded-broker", "--quiet"]
        cmds[name] = (video, cmd + ["--data-dir", "", "--log-level", "WARNING"] + list(extra), " ".join(extra))
    for name, (python, video) in (peer or {}).items():
        cmds[name] = (video, [python, os.path.join(_repo(), "fer_edge", "bench_peer.py"), "agent", video], PEER_PROGRAM)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    times: dict[str, list[float]] = dict((name, []) for name in cmds)
    for _ in range(repeats):
        for name, (video, cmd, _flags) in cmds.items():
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=_repo(), env=env)
            if proc.returncode != 0:
                raise RuntimeError("{} on {} failed: {}".format(name, video, proc.stderr[-2000:]))
            times[name].append(time.perf_counter() - start)
    return dict(
        (
            name,
            {
                "video": os.path.basename(cmds[name][0]),
                "flags": cmds[name][2],
                "wall_s": float(statistics.median(v)),
                "runs": [round(t, 2) for t in v],
            },
        )
        for name, v in times.items()
    )


# label -> (detector kind, options): the rows of the video table
VIDEO_CANDIDATES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("default (blazeface-back, tiles auto)", "blazeface-back", {}),
    ("blazeface-back, tiles 1x1 (the old default)", "blazeface-back", {"tiles": "1x1"}),
    ("blazeface-back, tiles 4x2 every frame", "blazeface-back", {"tiles": "4x2"}),
    ("blazeface-back, tiles auto, score >= 0.6", "blazeface-back", {"score_threshold": 0.6}),
    ("blazeface-back, tiles auto, score >= 0.7", "blazeface-back", {"score_threshold": 0.7}),
)


def video_rows(
    sets: dict[str, list[Scene]],
    match: MatchFn,
    classifier: "EmotionClassifier | None",
    min_face: int,
    hold: int = 20,
    settle: int = 15,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """The video table: each candidate as an agent camera runs it (``edge.agent.assembly.camera_detector``)
    on held near and far clips and on moving far clips."""
    from edge.agent.assembly import camera_detector
    from edge.detect.factory import NEURAL, make_detector, shipped_detector_path

    rows = []
    for label, kind, options in VIDEO_CANDIDATES:
        if kind in NEURAL and not os.path.isfile(options.get("model") or shipped_detector_path(kind)):
            log("video: {} skipped (not made here)".format(label))
            continue
        shared = make_detector(kind, min_size=min_face, **options)
        row: dict[str, Any] = {"detector": label, "runtime": shared.runtime}
        for name, kind_, moving in (("near", "near", False), ("far", "far", False), ("far moving", "far", True)):
            if kind_ not in sets:
                continue
            row[name] = evaluate_clips(
                functools.partial(camera_detector, shared, {}), sets[kind_], match, hold, settle, moving, classifier
            )
            log(
                "video {} {}: recall {:.3f}, latency p90 {:.0f} frames, {:.1f} ms/frame".format(
                    label, name, row[name]["recall"], row[name]["latency_p90"], row[name]["ms_per_frame"]
                )
            )
        shared.close()
        rows.append(row)
    return rows


def video_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The video table and the walls as Markdown."""
    cols = (
        ("recall", "{:.3f}"),
        ("false_positives_per_frame", "{:.3f}"),
        ("end_to_end_accuracy", "{:.3f}"),
        ("latency_p90", "{:.0f}"),
        ("ms_per_frame", "{:.1f}"),
    )
    head = ["detector (video)"]
    for name in ("near", "far", "far moving"):
        head += ["{} recall".format(name), "{} FP/frame".format(name), "{} per-frame label".format(name)]
        head += ["{} discovery p90 (frames)".format(name), "{} ms".format(name)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["detector"]]
        for name in ("near", "far", "far moving"):
            for key, fmt in cols:
                value = row.get(name, {}).get(key)
                cells.append("-" if value is None else fmt.format(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def walls_markdown(walls: dict[str, dict[str, Any]]) -> str:
    lines = ["| whole process on | flags | wall s (median) | runs |", "|---|---|---|---|"]
    for name, row in walls.items():
        lines.append("| {} | {} | {:.2f} | {} |".format(name, row["flags"] or "(default)", row["wall_s"], row["runs"]))
    return "\n".join(lines) + "\n"


WALL_VIDEOS = (("640x480 two faces", "near"), ("1280x720 four faces", "far"))


PEER_WALL = "640x480 two faces, the fer peer"


def walls_section(
    faces: np.ndarray,
    labels: np.ndarray,
    frames: int,
    folder: str,
    repeats: int = 3,
    seed: int = 0,
    peer_python: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Whole `fer-edge run` walls on a 640x480 two-face and a 1280x720 four-face video of ``frames``
    frames each (scenes held 30 frames), the default flags and, on the 720p video, tiles 1x1; with
    ``peer_python``, the `fer` peer's whole process on the 640x480 video in the same rounds."""
    from .scenes import backgrounds, make_scenes

    pool = backgrounds()
    hold = 30
    videos = {}
    for name, kind in WALL_VIDEOS:
        scenes = make_scenes(kind, max(1, -(-frames // hold)), faces, labels, seed=seed + 500, pool=pool)
        path = os.path.join(folder, "walls-{}-{}.mp4".format(kind, frames))
        videos[name] = write_clip_video(path, scenes, hold, seed=seed, limit=frames)
    runs: dict[str, tuple[str, Sequence[str]]] = dict((name, (path, ())) for name, path in videos.items())
    runs["1280x720 four faces, tiles 1x1"] = (videos["1280x720 four faces"], ("--detector-tiles", "1x1"))
    peer = {PEER_WALL: (peer_python, videos["640x480 two faces"])} if peer_python else None
    return run_walls(runs, repeats, peer)


def _repo() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
