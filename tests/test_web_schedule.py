"""The in-browser app's detection rules of a single image (fer_edge/web/static/js/schedule.js and detect.js)
against the Python definitions, run under Node.js with config.json's constants: the automatic tiles and
their regions (edge.detect.tiling), the cut-edge rule (blazeface.inner_edges_kept) and the merge of the
tiles' faces with the whole frame's (edge.detect.schedule.merge)."""

import json
import random
import shutil
import subprocess

import numpy as np
import pytest

from edge.detect import schedule, tiling
from edge.detect.blazeface import inner_edges_kept
from edge.detect.crops import Detection
from fer_edge.web.site import tiling_rules

NODE_HARNESS = """
import fs from "fs";
const sc = await import(process.argv[2] + "/schedule.js");
const dt = await import(process.argv[2] + "/detect.js");
const job = JSON.parse(fs.readFileSync(process.argv[3]));
const rules = job.rules;
const tiles = job.tiles.map(([w, h, m, s, o]) => {
  const g = sc.autoTiles(w, h, m, s, o, rules);
  return [g, sc.tileRegions(w, h, g, o)];
});
const edges = job.edges.map(([box, region, w, h]) => dt.innerEdgesKept(box, region, w, h, rules.edge_margin));
const merged = job.merges.map(([whole, closer, scale]) =>
  sc.merge(whole, closer, (b) => Math.max(b[2], b[3]) * scale < rules.face_input_px, rules).map((d) => d.id));
console.log(JSON.stringify({ tiles, edges, merged }));
"""


def _node(tmp_path, job):
    from fer_edge.web.vendor import STATIC_DIR

    node = shutil.which("node")
    if node is None:
        pytest.skip("no Node.js here to run the page's modules outside a browser")
    (tmp_path / "harness.mjs").write_text(NODE_HARNESS)
    (tmp_path / "job.json").write_text(json.dumps(dict(job, rules=tiling_rules())))
    out = subprocess.run(
        [node, str(tmp_path / "harness.mjs"), "file://" + STATIC_DIR + "/js", str(tmp_path / "job.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


def _detection(rng, width, height, i):
    side = rng.randint(20, 160)
    box = (rng.randint(0, width - side), rng.randint(0, height - side), side, side + rng.randint(-5, 5))
    return Detection(box, round(rng.uniform(0.5, 1.0), 4), (0.0, 0.0, 1.0, 0.0), [(float(i), 0.0)])


def test_javascript_detection_rules_match_python(tmp_path):
    """autoTiles/tileRegions, innerEdgesKept and merge give Python's grids, regions, kept boxes and merged
    faces on random frames, boxes and detections (float32 boxes at the cut edges included)."""
    rng = random.Random(7)
    sizes = [(640, 480, 32, 256, 0.25), (1280, 720, 32, 256, 0.25), (1920, 1080, 20, 128, 0.25)]
    for _ in range(500):
        width, height = rng.randint(64, 4000), rng.randint(64, 3000)
        sizes.append((width, height, rng.randint(8, min(width, height, 300)), rng.choice([128, 256]), rng.random() / 2))
    edges = []
    for _ in range(500):
        width, height = rng.randint(200, 1920), rng.randint(200, 1080)
        x0, y0 = rng.choice([0, rng.randint(1, width // 2)]), rng.choice([0, rng.randint(1, height // 2)])
        x1, y1 = rng.choice([width, rng.randint(x0 + 50, width)]), rng.choice([height, rng.randint(y0 + 50, height)])
        margin = tiling_rules()["edge_margin"] * max(x1 - x0, y1 - y0)
        # corners on, just inside and just outside the margins, as float32 as the detector's boxes are
        near = [x0 + margin, y0 + margin, x1 - margin, y1 - margin]
        box = np.array([v + rng.choice([0.0, 1e-4, -1e-4, rng.uniform(-30, 30)]) for v in near], np.float32)
        edges.append((box, (x0, y0, x1, y1), width, height))
    merges = []
    for _ in range(300):
        width, height = rng.choice([(640, 480), (1280, 720)])
        whole = [_detection(rng, width, height, i) for i in range(rng.randint(0, 4))]
        closer = [_detection(rng, width, height, 10 + i) for i in range(rng.randint(0, 6))]
        closer += [
            Detection(d.box, round(d.score * rng.uniform(0.7, 1.1), 4), d.crop, [(100.0 + i, 0.0)])
            for i, d in enumerate(whole)
        ]
        merges.append((whole, closer, 256 / float(max(width, height))))
    as_js = [
        [[{"box": list(d.box), "score": d.score, "id": d.keypoints[0][0]} for d in part] for part in (w, c)] + [s]
        for w, c, s in merges
    ]
    js = _node(
        tmp_path,
        {
            "tiles": sizes,
            "edges": [(box.tolist(), region, w, h) for box, region, w, h in edges],
            "merges": as_js,
        },
    )
    for (width, height, min_face, size, overlap), (grid, regions) in zip(sizes, js["tiles"]):
        expected = tiling.auto_tiles(width, height, min_face, size, overlap)
        assert tuple(grid) == expected
        assert [tuple(r) for r in regions] == tiling.tile_regions(width, height, expected, overlap)
    kept = [bool(inner_edges_kept(box[None], region, w, h)[0]) for box, region, w, h in edges]
    assert js["edges"] == kept and 50 < sum(kept) < 450
    for (whole, closer, scale), ids in zip(merges, js["merged"]):
        out = schedule.merge(whole, closer, lambda box, s=scale: max(box[2], box[3]) * s < tiling.FACE_INPUT_PX)
        assert ids == [d.keypoints[0][0] for d in out]
    # every rule acted: faces only a tile found (kept and dropped), whole-frame boxes replaced by a tile's
    added = sum(len(ids) - len(w) for (w, _, _), ids in zip(merges, js["merged"]))
    replaced = sum(i >= 100 for ids in js["merged"] for i in ids)
    assert added > 20 and replaced > 5
