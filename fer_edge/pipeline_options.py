"""The pipeline's command-line flags (model, runtime, detector and its options), one definition for every
command that builds ``fer_edge.run.pipeline_from_args``'s pipeline: `fer-edge image`, `fer-edge web`,
`fer-edge serve`."""

import argparse


def add_pipeline_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The model and detector flags of `fer-edge image` (``fer_edge.run.pipeline_from_args``), shared by
    `fer-edge web` and `fer-edge serve` so the three build the same pipeline with the same defaults."""
    from edge.detect.factory import DEFAULT_DETECTOR, DEFAULT_MIN_FACE, DETECTORS

    p.add_argument(
        "--model",
        help="a shipped model's name (default = balanced, accurate, fast, fast-accurate, deep-emotion) or a model file (default: the default model, balanced)",
    )
    p.add_argument("--runtime")
    p.add_argument(
        "--detector", default=DEFAULT_DETECTOR, choices=DETECTORS, help="face detector (default: %(default)s)"
    )
    p.add_argument(
        "--detector-model",
        dest="detector_model",
        help="face-detector artifact for a blazeface-* detector (default: the shipped one)",
    )
    p.add_argument("--detector-score", dest="detector_score", type=float, help="lowest face score (default 0.5)")
    p.add_argument(
        "--detector-tiles",
        dest="detector_tiles",
        default="auto",
        help="auto: tiles chosen from the image size and --min-face; COLSxROWS: those tiles; 1x1: none "
        "(default: %(default)s)",
    )
    p.add_argument("--yunet-model", dest="yunet_model")
    p.add_argument(
        "--min-face",
        dest="min_face",
        type=int,
        default=DEFAULT_MIN_FACE,
        help="smallest face in pixels (default: %(default)s)",
    )
    return p
