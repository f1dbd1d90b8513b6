"""Host converter: SavedModel -> ONNX (checked) -> TensorRT engine for this machine's GPU.

A thin caller of the device code: everything about engines (naming, staleness, the builder, the
check, back-off) lives in ``jetson.engine`` and runs the same on a Jetson (``python3 -m jetson.engine``)
and on a host with TensorRT. Here the check set is the SavedModel's own probabilities on real
faces (which also calibrate INT8), so the engine is verified against the source model, through
``TensorRTBackend``.
"""

import os
from typing import Callable

import numpy.typing as npt

from .errors import ConversionError


def export_tensorrt(
    savedmodel_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    faces: npt.ArrayLike | None = None,
    data: str | os.PathLike[str] | None = None,
    opset: int | None = None,
    force: bool = False,
    name: str = "model",
    limit: int | None = None,
    precision: str = "fp16",
    max_batch: int = 8,
    log: Callable[[str], None] | None = None,
) -> str:
    """SavedModel -> ``out_dir`` holding the checked ONNX and the checked engine; returns the engine path."""
    from edge import metadata as md
    from edge.backends.base import BackendError
    from edge.files import sha256_file
    from edge.preprocess import prepare_faces
    from jetson.engine import build_or_reuse
    from jetson.engine_check import CheckSet
    from jetson.trt_backend import import_tensorrt

    try:
        import_tensorrt()  # before any work: say at once when TensorRT is missing
    except BackendError as exc:
        raise ConversionError(
            "TensorRT is not installed or not usable here ({}); build the engine on the Jetson "
            "(the bundle's install.sh does)".format(exc)
        ) from exc
    from . import parity
    from .common import SavedModelSource, final_path, refuse_existing, staged_output, stem_of
    from .onnx_export import ATOL as ONNX_ATOL
    from .onnx_export import DEFAULT_OPSET, LAYOUT, onnxruntime_predictor, write_onnx

    stem = stem_of(name)
    refuse_existing(out_dir, force)
    check_faces, described = parity.parity_faces(faces, data, parity.DEFAULT_LIMIT if limit is None else limit)
    source = SavedModelSource(savedmodel_dir)
    with staged_output(out_dir, force) as stage:
        onnx_path = write_onnx(
            source, os.path.join(stage, stem + ".onnx"), DEFAULT_OPSET if opset is None else opset, log
        )
        if log:
            log("checking with ONNX Runtime on {}".format(described))
        parity.check(
            "ONNX (onnxruntime)", source, onnxruntime_predictor(onnx_path), check_faces, LAYOUT, ONNX_ATOL, log=log
        )
        expected = source.predict(prepare_faces(check_faces, source.meta))
        inputs = prepare_faces(check_faces, md.with_layout(source.meta, "NCHW"))
        checks = CheckSet(
            inputs, [expected], md.CLASSIFIER, sha256_file(onnx_path), "the SavedModel on " + described, savedmodel_dir
        )
        try:
            engine = build_or_reuse(
                onnx_path,
                stage,
                precision,
                max_batch,
                calibration_faces=check_faces,
                check=checks,
                stem=stem,
                force=True,
                log=log,
            )
        except BackendError as exc:
            raise ConversionError(str(exc)) from exc
        result = final_path(stage, out_dir, engine)
    return result
