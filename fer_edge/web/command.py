"""`fer-edge web`: the in-browser app as static files (``--out DIR``), or its pipeline run in headless
Chromium on image files (``--check IMAGE...``), printed like `fer-edge image` and, with ``--compare``,
held against the Python pipeline (exit status 1 when the parity target is missed)."""

import argparse
import json
import sys
from typing import Any


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> argparse.ArgumentParser:
    """The ``web`` subcommand's parser (the model and detector flags are `fer-edge image`'s, added by the caller)."""
    p = sub.add_parser(
        "web",
        help="the in-browser app: write it as static files (--out) or run it in headless Chromium (--check)",
        description="The in-browser app (onnxruntime-web, the same models and pipeline as `fer-edge image`; "
        "docs/web.md). --out DIR writes it for any static host; --check runs it in headless Chromium.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", metavar="DIR", help="write the app (page, scripts, runtime, models, config.json) here")
    what.add_argument("--check", nargs="+", metavar="IMAGE", help="run the in-browser pipeline on these images")
    p.add_argument(
        "--compare",
        action="store_true",
        help="--check: also run `fer-edge image`'s pipeline and hold the two to the parity target "
        "(boxes within 2 px, the same emotion on >= 98%% of faces, probabilities within 1e-3); exit 1 when missed",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for Chromium to answer (default %(default)s)")
    return p


def cmd_web(args: argparse.Namespace) -> int:
    from ..run import pipeline_from_args
    from .browser import BrowserError
    from .site import NotInBrowser, write_site
    from .vendor import VendorMissing

    try:
        pipeline = pipeline_from_args(args)
        if args.out:
            written = write_site(args.out, pipeline)
            print(
                "fer-edge web: wrote {} files to {} (serve the folder with any static host)".format(
                    len(written), args.out
                )
            )
            return 0
        return _check(pipeline, args.check, args.compare, args.timeout)
    except (NotInBrowser, VendorMissing, BrowserError) as exc:
        print("fer-edge web: error: {}".format(exc), file=sys.stderr)
        return 2


def _check(pipeline: Any, paths: list[str], compare_python: bool, timeout: float) -> int:
    import cv2

    from .check import browser_faces, compare, parity

    readable = []
    status = 0
    for path in paths:
        if cv2.imread(path, cv2.IMREAD_COLOR) is None:
            print("fer-edge web: error: {}: not a readable image".format(path), file=sys.stderr)
            status = 2
        else:
            readable.append(path)
    results = browser_faces(pipeline, readable, timeout=timeout).results if readable else []
    reports = []
    for path, result in zip(readable, results):
        print(json.dumps({"image": path, "faces": result["faces"]}), flush=True)
        if compare_python:
            python_faces = pipeline.detect_emotions(cv2.imread(path, cv2.IMREAD_COLOR))
            reports.append(dict(compare(python_faces, result["faces"]), image=path))
    if compare_python:
        verdict = parity(reports)
        print(json.dumps({"parity": verdict}), flush=True)
        if not verdict["ok"]:
            for report in reports:
                if (
                    report["python_only"]
                    or report["browser_only"]
                    or any(not p["same_emotion"] or p["prob_gap"] > 1e-3 for p in report["pairs"])
                ):
                    print("fer-edge web: parity missed on {}: {}".format(report["image"], report), file=sys.stderr)
            return 1
    return status
