"""`fer-edge web --check`: the in-browser pipeline on image files in headless Chromium, its faces as
`fer-edge image` prints them, and (``compare``) the parity with the Python pipeline: the same faces
(boxes within 2 px), the same emotion on at least 98% of them, every probability within 1e-3."""

import collections
import os
from typing import Any

from .browser import Chromium
from .site import PAGE, app_config, page_html, site_files
from .static_server import StaticServer

# results: one per image (faces, times in ms, stages, width, height, runtime); urls: every URL the page asked
# for; product: the browser's name and version
BrowserRun = collections.namedtuple("BrowserRun", "results urls product")
BOX_PX = 2
SAME_EMOTION = 0.98
PROB_TOL = 1e-3


def browser_faces(
    pipeline: Any, paths: list[str], repeat: int = 1, timeout: float = 120.0, traced: bool = False
) -> BrowserRun:
    """The page's pipeline on each image, in headless Chromium against a local static server of the app;
    ``repeat``: runs per image (timing); ``traced``: with the crop regions and crops."""
    import json

    files: dict[str, Any] = dict(site_files(pipeline))
    config = json.dumps(app_config(pipeline)).encode()
    files["config.json"] = lambda: config
    files[PAGE] = page_html
    for i, path in enumerate(paths):
        files["check/{}{}".format(i, os.path.splitext(path)[1].lower())] = path
    results = []
    with StaticServer(files) as server, Chromium(timeout=timeout) as browser:
        browser.open(server.url + PAGE)
        for i, path in enumerate(paths):
            url = server.url + "check/{}{}".format(i, os.path.splitext(path)[1].lower())
            results.append(
                browser.evaluate(
                    "window.fer.run({}, {}, {})".format(json.dumps(url), int(repeat), json.dumps(traced)),
                    timeout=timeout,
                )
            )
        for result in results:
            result["faces"] = [as_image_face(face) for face in result["faces"]]
        product = str(browser.call("Browser.getVersion").get("product", "?"))
        return BrowserRun(results, list(browser.urls), product)


def as_image_face(face: dict[str, Any]) -> dict[str, Any]:
    """A face from the page with `fer-edge image`'s types (JavaScript writes 1.0 as 1)."""
    return {
        "box": [int(v) for v in face["box"]],
        "emotion": str(face["emotion"]),
        "confidence": float(face["confidence"]),
        "scores": dict((k, float(v)) for k, v in face["scores"].items()),
    }


def _box_gap(a: list[int], b: list[int]) -> int:
    return max(abs(int(x) - int(y)) for x, y in zip(a, b))


def compare(python_faces: list[dict[str, Any]], js_faces: list[dict[str, Any]]) -> dict[str, Any]:
    """Each Python face paired with the browser face whose box is nearest: box gap (px), same emotion,
    the largest probability gap; faces left unpaired on either side."""
    left = list(range(len(js_faces)))
    pairs = []
    for face in python_faces:
        if not left:
            break
        j = min(left, key=lambda k: _box_gap(face["box"], js_faces[k]["box"]))
        other = js_faces[j]
        if _box_gap(face["box"], other["box"]) > BOX_PX:
            continue
        left.remove(j)
        pairs.append(
            {
                "box_px": _box_gap(face["box"], other["box"]),
                "same_emotion": face["emotion"] == other["emotion"],
                "prob_gap": max(abs(face["scores"][k] - other["scores"][k]) for k in face["scores"]),
            }
        )
    return {"pairs": pairs, "python_only": len(python_faces) - len(pairs), "browser_only": len(left)}


def parity(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The verdict over all images: faces, faces paired within 2 px, share with the same emotion, the
    largest probability gap, and whether the target holds."""
    pairs = [p for r in reports for p in r["pairs"]]
    unpaired = sum(r["python_only"] + r["browser_only"] for r in reports)
    same = sum(p["same_emotion"] for p in pairs) / len(pairs) if pairs else 1.0
    gap = max((p["prob_gap"] for p in pairs), default=0.0)
    box = max((p["box_px"] for p in pairs), default=0)
    ok = unpaired == 0 and same >= SAME_EMOTION and gap <= PROB_TOL + 1e-9
    return {
        "faces": len(pairs) + unpaired,
        "paired": len(pairs),
        "unpaired": unpaired,
        "max_box_px": box,
        "same_emotion": round(same, 4),
        "max_prob_gap": round(gap, 6),
        "within_prob_tol": sum(p["prob_gap"] <= PROB_TOL + 1e-9 for p in pairs),
        "ok": ok,
    }
