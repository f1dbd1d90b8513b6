"""The in-browser pipeline's pixel arithmetic (fer_edge/web/static/js/imaging.js) against OpenCV, run under
Node.js: the browser must give the crops and detector inputs `fer-edge image` gives (docs/web.md)."""

import base64
import json
import os
import shutil
import subprocess

import cv2
import numpy as np
import pytest

NODE_HARNESS = """
import fs from "fs";
const im = await import(process.argv[2]);
const job = JSON.parse(fs.readFileSync(process.argv[3]));
const src = im.makeImage(job.w, job.h, 3, new Uint8Array(Buffer.from(job.data, "base64")));
const out = job.cases.map((c) => {
  let r;
  if (c.op === "linear") r = im.resizeLinear(src, c.dw, c.dh);
  if (c.op === "gray") r = im.toGray(src);
  if (c.op === "area") r = im.resizeArea(im.toGray(src), c.dw, c.dh);
  if (c.op === "warp") r = im.warpAffine(src, c.m, c.dw, c.dh);
  return Buffer.from(r.data).toString("base64");
});
console.log(JSON.stringify(out));
"""


def test_javascript_pixels_match_opencv(tmp_path):
    """imaging.js against cv2 on a photo and on noise: the letterbox resize, the gray conversion, the area
    resize and the rotated, edge-replicated crop give OpenCV's uint8 pixels exactly; other bilinear sizes
    differ by at most 1 on a few pixels (OpenCV's vector and scalar paths round differently)."""
    from fer_edge.samples import faces_frame
    from fer_edge.web.vendor import STATIC_DIR

    node = shutil.which("node")
    if node is None:
        pytest.skip("no Node.js here to run the page's modules outside a browser")
    rng = np.random.default_rng(1)
    for image in (faces_frame(640, 480, 2), rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)):
        rgb = np.ascontiguousarray(image[..., ::-1])
        h, w = image.shape[:2]
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        scale = 256 / max(w, h)
        cases = [
            ("linear", (256, int(round(h * scale))), cv2.resize(rgb, (256, int(round(h * scale))))),
            ("linear", (48, 48), cv2.resize(rgb, (48, 48))),
            ("linear", (2 * w, 2 * h), cv2.resize(rgb, (2 * w, 2 * h))),
            ("gray", None, gray),
            ("area", (48, 48), cv2.resize(gray, (48, 48), interpolation=cv2.INTER_AREA)),
            ("area", (w // 2, h // 2), cv2.resize(gray, (w // 2, h // 2), interpolation=cv2.INTER_AREA)),
            ("area", (37, 29), cv2.resize(gray, (37, 29), interpolation=cv2.INTER_AREA)),
            ("linear", (77, 33), cv2.resize(rgb, (77, 33))),
        ]
        for cx, cy, side, angle in ((w / 2 + 0.3, h / 2 - 0.7, 60.4, 7.3), (10.2, 5.5, 80.0, -12.0)):
            out = int(round(side))
            m = cv2.getRotationMatrix2D((cx, cy), angle, out / side)
            m[0, 2] += out / 2 - cx
            m[1, 2] += out / 2 - cy
            warped = cv2.warpAffine(rgb, m, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            cases.append(("warp", (out, out, m.ravel().tolist()), warped))
        job = {"w": w, "h": h, "data": base64.b64encode(rgb.tobytes()).decode(), "cases": []}
        for op, size, _ in cases:
            case = {"op": op}
            if size is not None:
                case.update(dw=size[0], dh=size[1])
                if op == "warp":
                    case["m"] = size[2]
            job["cases"].append(case)
        (tmp_path / "job.json").write_text(json.dumps(job))
        harness = tmp_path / "harness.mjs"
        harness.write_text(NODE_HARNESS)
        done = subprocess.run(
            [node, str(harness), os.path.join(STATIC_DIR, "js", "imaging.js"), str(tmp_path / "job.json")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        for (op, size, expected), got in zip(cases, json.loads(done.stdout)):
            got = np.frombuffer(base64.b64decode(got), np.uint8)
            diff = np.abs(got.astype(int) - expected.ravel().astype(int))
            if op == "linear" and size == (77, 33):
                assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (op, size)
            else:
                assert diff.max() == 0, (op, size, int((diff > 0).sum()))
