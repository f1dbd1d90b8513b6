"""`fer-edge bench detect`: face detectors side by side on scenes with ground truth, in one run.

Scenes (``fer_edge.scenes``) are FER+ **Valid** faces pasted on photographs: near (640x480, 2
faces 120-200 px), far (1280x720, 4 faces 40-100 px), tilted (near, rolled 15-30 degrees) and a
real photograph (scikit-image's astronaut). For each detector: recall at IoU 0.3, false
positives per frame, ms per frame (median over interleaved repetitions) and end-to-end accuracy
with the shipped classifier (faces found and labelled right, over all faces), accuracy on the
faces it found and the framing loss on them (``fer_edge.bench_framing``: true squares minus the
detector's crops, in points; the crop side's interquartile range over the true side).
``--calibrate`` measures each detector's box -> FER crop mapping on upright pasted Valid faces and
its keypoint template on upright pasted **Train** faces, and writes them
(``models/crop_mapping.json``) for ``make detector-models``.
"""

import os
import statistics
import time
from typing import TYPE_CHECKING, Any, Callable, Collection, Sequence

import numpy as np

from . import bench_framing
from .bench_calibrate import CALIBRATED, calibrate, write_calibration
from .scenes import (
    IOU,
    KINDS,
    Scene,
    astronaut_scene,
    backgrounds,
    box_iou,  # noqa: F401 (the tests' IoU, re-exported)
    make_scenes,
    match,
)

if TYPE_CHECKING:
    from edge.classifier import EmotionClassifier
    from edge.detect.base import FaceDetector

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Not shipped; measured when `python -m convert.detector_export --model blazeface-full-192` made it here.
FULL_MODEL = os.path.join(REPO, "models", "blazeface-full-192", "onnx", "model.onnx")

# name -> (detector kind, options); the rows of the table.
CANDIDATES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("blazeface-back (256)", "blazeface-back", {}),
    ("blazeface-back on OpenVINO (IR)", "blazeface-back", {"runtime": "openvino"}),
    ("blazeface-back, crop = box", "blazeface-back", {"_crop": "identity"}),
    ("blazeface-back, box mapping + levelling always", "blazeface-back", {"_crop": "box", "_min_roll": 0.0}),
    ("blazeface-back, box mapping", "blazeface-back", {"_crop": "box", "align": False}),
    ("blazeface-back, keypoint framing", "blazeface-back", {"_crop": "keypoints"}),
    ("blazeface-back, keypoint framing upright", "blazeface-back", {"_crop": "keypoints", "align": False}),
    (
        "blazeface-back tiles 4x2, levelling always",
        "blazeface-back",
        {"_crop": "box", "_min_roll": 0.0, "tiles": "4x2"},
    ),
    ("blazeface-back tiles 4x2, box mapping", "blazeface-back", {"_crop": "box", "align": False, "tiles": "4x2"}),
    ("blazeface-back tiles 4x2, keypoint framing", "blazeface-back", {"_crop": "keypoints", "tiles": "4x2"}),
    ("blazeface-back, score >= 0.6", "blazeface-back", {"score_threshold": 0.6}),
    ("blazeface-back, tiles 2x1", "blazeface-back", {"tiles": "2x1"}),
    ("blazeface-back, tiles 4x2", "blazeface-back", {"tiles": "4x2"}),
    ("blazeface-short (128)", "blazeface-short", {}),
    ("blazeface-short, score >= 0.3", "blazeface-short", {"score_threshold": 0.3}),
    ("blazeface-short, tiles 2x2", "blazeface-short", {"tiles": "2x2"}),
    ("blazeface-full (192), not shipped, tiles 1x1", "blazeface-back", {"model": FULL_MODEL, "tiles": "1x1"}),
    ("haar (OpenCV)", "haar", {}),
    ("haar, min face 50 (the old default)", "haar", {"_min_size": 50}),
)


def _installed(module):
    from edge.backends.base import module_installed

    return module_installed(module)


def make_detectors(min_face: int, names: Collection[str] | None = None) -> list[tuple[str, "FaceDetector"]]:
    from edge.detect.crops import IDENTITY
    from edge.detect.factory import NEURAL, make_detector, shipped_detector_path

    out = []
    for label, kind, options in CANDIDATES:
        if names and kind not in names and label not in names:
            continue
        if kind in NEURAL and options.get("runtime") == "openvino" and not _installed("openvino"):
            continue
        if kind in NEURAL and not os.path.isfile(options.get("model") or shipped_detector_path(kind)):
            continue  # not made here (blazeface-full: `python -m convert.detector_export --model blazeface-full-192`)
        opts = dict(options)
        crop = opts.pop("_crop", None)
        min_roll = opts.pop("_min_roll", None)
        det = make_detector(kind, min_size=opts.pop("_min_size", min_face), **opts)
        if min_roll is not None:
            det.min_roll = min_roll
        if crop == "keypoints":  # the keypoint template (edge.detect.framing), whichever the metadata uses
            det.framing = det.keypoint_framing
        elif crop:  # the box mapping alone, or the bare box
            det.framing = None
            if crop == "identity":
                det.mapping = IDENTITY
        out.append((label, det))
    return out


def scene_sets(faces: np.ndarray, labels: np.ndarray, counts: dict[str, int], seed: int) -> dict[str, list[Scene]]:
    pool = backgrounds()
    sets = dict(
        (kind, make_scenes(kind, n, faces, labels, seed=seed + k, pool=pool))
        for k, (kind, n) in enumerate(sorted(counts.items()))
        if n
    )
    sets["photo"] = [astronaut_scene()]
    return sets


def evaluate(
    detector: "FaceDetector", scenes: Sequence[Scene], classifier: "EmotionClassifier | None" = None
) -> dict[str, float]:
    """Detections on every scene once: counts for recall, false positives and accuracy."""
    from edge.detect.crops import face_crop

    found = total = false_pos = correct = labelled = labelled_found = true_correct = 0
    offs: list[tuple[float, float]] = []
    for scene in scenes:
        dets = detector.detect(scene.image)
        pairs = match(scene.faces, [d.box for d in dets])
        total += len(scene.faces)
        found += len(pairs)
        false_pos += len(dets) - len(pairs)
        if classifier is None:
            continue
        matched = [(scene.faces[i], dets[j]) for i, j in sorted(pairs.items()) if scene.faces[i].label >= 0]
        labelled += sum(1 for f in scene.faces if f.label >= 0)
        if matched:
            probs = classifier.predict([face_crop(scene.image, d) for _, d in matched])
            correct += int(sum(int(np.argmax(p)) == f.label for (f, _), p in zip(matched, probs)))
            labelled_found += len(matched)
            true_probs, framed = bench_framing.framing(classifier, scene.image, matched)
            true_correct += int(sum(int(np.argmax(p)) == f.label for (f, _), p in zip(matched, true_probs)))
            offs.extend(framed)
    row = {
        "faces": total,
        "found": found,
        "recall": found / float(total) if total else float("nan"),
        "false_positives_per_frame": false_pos / float(len(scenes)),
    }
    if classifier is not None and labelled:
        row["end_to_end_accuracy"] = correct / float(labelled)
        row["accuracy_on_found"] = correct / float(labelled_found) if labelled_found else float("nan")
        row.update(bench_framing.summary(true_correct, correct, labelled_found, offs))
    return row


def time_detectors(
    detectors: Sequence[tuple[str, "FaceDetector"]], scenes: Sequence[Scene], repeats: int, log: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """Median ms per frame of each detector, repetitions interleaved (A B C A B C ...)."""
    times: dict[str, list[float]] = dict((label, []) for label, _ in detectors)
    for _label, det in detectors:
        det.detect(scenes[0].image)  # warm-up
    for _ in range(repeats):
        for label, det in detectors:
            start = time.perf_counter()
            for scene in scenes:
                det.detect(scene.image)
            times[label].append(1000.0 * (time.perf_counter() - start) / len(scenes))
    return dict(
        (label, {"ms_per_frame": statistics.median(v), "ms_runs": [round(x, 2) for x in v]})
        for label, v in times.items()
    )


def run(
    data: str,
    counts: dict[str, int] | None = None,
    repeats: int = 5,
    seed: int = 0,
    min_face: int = 24,
    names: Collection[str] | None = None,
    calibrate_only: bool = False,
    out_json: str | None = None,
    out_md: str | None = None,
    peer_python: str | None = None,
    log: Callable[[str], None] = print,
    video: bool = True,
    wall_frames: int = 480,
    wall_repeats: int = 3,
) -> dict[str, Any]:
    from edge.classifier import load_classifier
    from train.dataset import read_source

    from .bench import machine

    faces, dists, _ = read_source(data).split("FER2013Valid").labelled("majority")
    labels = np.argmax(dists, axis=1)
    report: dict[str, Any] = {"machine": machine(), "iou": IOU, "min_face": min_face, "seed": seed, "repeats": repeats}
    if calibrate_only:
        scenes = make_scenes("calibrate", (counts or {}).get("calibrate", 150), faces, labels, seed=seed + 100)
        from edge.detect.factory import NEURAL, make_detector, shipped_detector_path

        detectors = [
            (kind, make_detector(kind, min_size=min_face))
            for kind in CALIBRATED
            if kind not in NEURAL or os.path.isfile(shipped_detector_path(kind))
        ]
        mapping = calibrate(detectors, scenes, log)
        train, train_dists, _ = read_source(data).split("FER2013Train").labelled("majority")
        upright = make_scenes(
            "calibrate", (counts or {}).get("template", 600), train, np.argmax(train_dists, axis=1), seed=seed + 200
        )
        for kind, det in detectors:
            if kind not in NEURAL or kind not in mapping:
                continue
            mapping[kind]["crop"].update(framing="box", min_roll=bench_framing.MIN_ROLL)
            template = bench_framing.measure_template(det, upright)
            if template is not None:
                mapping[kind]["crop"].update(
                    framing=bench_framing.FRAMING, keypoints=template["keypoints"], template=template["template"]
                )
                mapping[kind].update(template_faces=template["faces"], template_iqr=template["iqr"])
                log(
                    "calibrate {}: keypoint template {} on {} Train faces".format(
                        kind, template["template"], template["faces"]
                    )
                )
        report["calibration"] = mapping
        if out_json:
            write_calibration(mapping, out_json, report)
        return report
    counts = counts or {"near": 60, "far": 30, "tilted": 40}
    sets = scene_sets(faces, labels, counts, seed)
    report["scenes"] = dict(
        (
            k,
            {
                "frames": len(v),
                "faces": sum(len(s.faces) for s in v),
                "size": list(KINDS[k]["size"]) if k in KINDS else list(v[0].image.shape[1::-1]),
            },
        )
        for k, v in sets.items()
    )
    classifier = load_classifier()
    detectors = make_detectors(min_face, names)
    rows: dict[str, dict[str, Any]] = dict(
        (label, {"detector": label, "runtime": det.runtime}) for label, det in detectors
    )
    for kind, scenes in sorted(sets.items()):
        for label, det in detectors:
            rows[label][kind] = evaluate(det, scenes, classifier)
        timing = time_detectors(detectors, scenes, repeats, log)
        for label in timing:
            rows[label][kind].update(timing[label])
        log(
            "scenes {}: {}".format(
                kind,
                "; ".join(
                    "{} recall {:.2f} {:.1f} ms".format(lbl, rows[lbl][kind]["recall"], rows[lbl][kind]["ms_per_frame"])
                    for lbl, _ in detectors
                ),
            )
        )
    if peer_python:
        from .bench_peer_detect import peer_rows

        for kind, row in peer_rows(peer_python, sets, faces, labels, match, log).items():
            rows.setdefault(
                "fer (peer: Haar + mini-Xception)",
                {"detector": "fer (peer: Haar + mini-Xception)", "runtime": "fer package"},
            )[kind] = row
    report["detectors"] = list(rows.values())
    report["markdown"] = markdown(report)
    if video:
        section = video_section(
            sets, faces, labels, classifier, min_face, wall_frames, wall_repeats, seed, log, peer_python
        )
        report["markdown"] = report["markdown"] + "\n" + section.pop("video_markdown")
        report.update(section)
    from .bench import write_report

    return write_report(report, out_json, out_md)


def video_section(
    sets: dict[str, list[Scene]],
    faces: np.ndarray,
    labels: np.ndarray,
    classifier: "EmotionClassifier",
    min_face: int,
    wall_frames: int,
    wall_repeats: int,
    seed: int,
    log: Callable[[str], None],
    peer_python: str | None = None,
) -> dict[str, Any]:
    """The detectors as a video's camera runs them, and whole `fer-edge run` walls (``fer_edge.bench_video``)."""
    import tempfile

    from .bench_video import PEER_WALL, SHIFT_PX, video_markdown, video_rows, walls_markdown, walls_section

    rows = video_rows(sets, match, classifier, min_face, log=log)
    with tempfile.TemporaryDirectory() as folder:
        walls = walls_section(faces, labels, wall_frames, folder, wall_repeats, seed, peer_python)
    far, near = walls["1280x720 four faces"]["wall_s"], walls["640x480 two faces"]["wall_s"]
    peer_s = walls[PEER_WALL]["wall_s"] if PEER_WALL in walls else None
    text = (
        "Video: each scene held {} frames with fresh noise (and far scenes moving {} px a frame), "
        "measured per frame after frame {}; discovery: the frame a face is first found on (p90).\n\n".format(
            rows[0]["near"]["hold"] if rows else 0, SHIFT_PX, rows[0]["near"]["settle"] if rows else 0
        )
        + video_markdown(rows)
        + "\nWhole `fer-edge run` processes, {} frames each, {} interleaved repetitions; 720p four faces / "
        "480p two faces: {:.2f}x{}.\n\n".format(
            wall_frames,
            wall_repeats,
            far / near,
            "" if peer_s is None else "; 480p two faces, ours / the `fer` peer's: {:.2f}x".format(near / peer_s),
        )
        + walls_markdown(walls)
    )
    out = {"video": rows, "walls": walls, "walls_ratio": far / near, "video_markdown": text}
    if peer_s is not None:
        out["walls_peer_ratio"] = near / peer_s
    return out


def _cell(row, kind, key, fmt):
    value = row.get(kind, {}).get(key)
    return "-" if value is None else fmt.format(value)


def markdown(report: dict[str, Any]) -> str:
    sc = report["scenes"]
    lines = [
        "Measured by `fer-edge bench detect` on {cpu} ({cores} cores); IoU >= {iou}, min face {min} px, "
        "{rep} interleaved repetitions (median ms). Scenes: near {n} frames / {nf} faces at 640x480, far {f} / "
        "{ff} at 1280x720, tilted {t} / {tf}, the astronaut photo.".format(
            iou=report["iou"],
            min=report["min_face"],
            rep=report["repeats"],
            n=sc.get("near", {}).get("frames", 0),
            nf=sc.get("near", {}).get("faces", 0),
            f=sc.get("far", {}).get("frames", 0),
            ff=sc.get("far", {}).get("faces", 0),
            t=sc.get("tilted", {}).get("frames", 0),
            tf=sc.get("tilted", {}).get("faces", 0),
            **report["machine"],
        ),
        "",
        "Framing loss: on the faces found, accuracy on squares cut at the true face positions minus accuracy "
        "on the detector's crops (points; negative: the crops do better); crop side: interquartile range of "
        "the crop's side over the true square's (near).",
        "",
        "| detector | near recall | near FP/frame | near ms | near end-to-end | near acc. on found | near framing "
        "loss | near crop side | tilted recall | tilted end-to-end | tilted framing loss | far recall | far FP/frame "
        "| far ms | far end-to-end | far framing loss | photo |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["detectors"]:
        cells = [row["detector"]]
        for kind, key, fmt in (
            ("near", "recall", "{:.3f}"),
            ("near", "false_positives_per_frame", "{:.3f}"),
            ("near", "ms_per_frame", "{:.1f}"),
            ("near", "end_to_end_accuracy", "{:.3f}"),
            ("near", "accuracy_on_found", "{:.3f}"),
            ("near", "framing_loss", "{:+.1f}"),
            ("near", "side_iqr", "{0[0]:.2f}-{0[1]:.2f}"),
            ("tilted", "recall", "{:.3f}"),
            ("tilted", "end_to_end_accuracy", "{:.3f}"),
            ("tilted", "framing_loss", "{:+.1f}"),
            ("far", "recall", "{:.3f}"),
            ("far", "false_positives_per_frame", "{:.2f}"),
            ("far", "ms_per_frame", "{:.1f}"),
            ("far", "end_to_end_accuracy", "{:.3f}"),
            ("far", "framing_loss", "{:+.1f}"),
            ("photo", "found", "{:d}/1"),
        ):
            cells.append(_cell(row, kind, key, fmt))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
