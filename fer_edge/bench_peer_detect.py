"""The `fer` package's pipeline (Haar + mini-Xception) on the detector benchmark's scenes, run in
the peer's own virtual environment (``fer_edge/bench_peer.py scenes``) and scored like ours."""

import json
import os
import statistics
import subprocess
import tempfile
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .bench import PEER_TO_FERPLUS, REPO, peer_env

if TYPE_CHECKING:
    from .scenes import Face, Scene


def peer_rows(
    python: str,
    sets: dict[str, list["Scene"]],
    faces: np.ndarray,
    labels: np.ndarray,
    match: Callable[[Sequence["Face"], Sequence[Sequence[float]]], dict[int, int]],
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, float]]:
    """{scene kind: row} for the peer: recall, false positives, end-to-end accuracy, ms per frame."""
    from edge.labels import EMOTIONS

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, scenes in sorted(sets.items()):
            frames = os.path.join(tmp, kind + ".npz")
            np.savez(frames, **dict(("frame_{}".format(i), s.image) for i, s in enumerate(scenes)))
            out = os.path.join(tmp, kind + ".json")
            proc = subprocess.run(
                [python, os.path.join(REPO, "fer_edge", "bench_peer.py"), "scenes", frames, out],
                capture_output=True,
                text=True,
                env=peer_env(),
                timeout=3600,
            )
            if proc.returncode != 0:
                raise RuntimeError("peer scenes failed: {}".format(proc.stderr[-2000:]))
            with open(out) as f:
                results = json.load(f)
            found = total = false_pos = correct = labelled = labelled_found = 0
            for scene, result in zip(scenes, results):
                boxes = [tuple(f["box"]) for f in result["faces"]]
                pairs = match(scene.faces, boxes)
                total += len(scene.faces)
                found += len(pairs)
                false_pos += len(boxes) - len(pairs)
                labelled += sum(1 for f in scene.faces if f.label >= 0)
                for i, j in pairs.items():
                    if scene.faces[i].label < 0:
                        continue
                    labelled_found += 1
                    predicted = EMOTIONS.index(PEER_TO_FERPLUS[result["faces"][j]["emotion"]])
                    correct += int(predicted == scene.faces[i].label)
            row = {
                "faces": total,
                "found": found,
                "recall": found / float(total),
                "false_positives_per_frame": false_pos / float(len(scenes)),
                "ms_per_frame": statistics.median(r["ms"] for r in results),
            }
            if labelled:
                row["end_to_end_accuracy"] = correct / float(labelled)
                row["accuracy_on_found"] = correct / float(labelled_found) if labelled_found else float("nan")
            rows[kind] = row
            log("peer scenes {}: recall {:.2f}, {:.1f} ms".format(kind, row["recall"], row["ms_per_frame"]))
    return rows
