"""SavedModel -> OpenVINO IR (.xml + .bin, FP16 weights), verified with the OpenVINO runtime on CPU.

``openvino.convert_model`` reads the SavedModel directly; a pre-processing step turns the input
into NCHW like the ONNX model (``face`` float32 [N, 1, H, W], gray 0..255, dynamic N), the output
is named ``probabilities``. Weights are stored as FP16 (``compress_to_fp16``), which is why the
tolerance is 1e-3 on probabilities (same argmax on every face). A model whose FP16 weights miss
that tolerance is written again with FP32 weights (logged): Deep-Emotion's spatial transformer
moves its sampling points with its weights, so FP16 rounding there changes the crop it samples. The metadata (layout NCHW) is
written to the sidecar ``<name>.xml.fer_edge.json`` and also stored in the IR's rt_info under
``fer_edge`` (a JSON string).

The check compiles the IR read back from disk on CPU with inference precision f32, so what is
measured is the IR itself (FP16 weights), not a CPU's bf16 execution mode.
"""

import os
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import numpy.typing as npt

from edge import metadata as md

from . import parity
from .common import SavedModelSource, final_path, refuse_existing, say, staged_output, stem_of
from .errors import ConversionError, ParityError

if TYPE_CHECKING:
    import openvino as ov

ATOL = 1e-3
LAYOUT = "NCHW"
RT_INFO_KEY = md.ONNX_METADATA_KEY


def to_openvino(source: SavedModelSource) -> "ov.Model":
    """An ov.Model of the SavedModel with an NCHW input named like the metadata."""
    import openvino as ov

    model = ov.convert_model(source.path)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ConversionError(
            "OpenVINO read the SavedModel as {} inputs and {} outputs (expected one each)".format(
                len(model.inputs), len(model.outputs)
            )
        )
    ppp = ov.preprocess.PrePostProcessor(model)
    ppp.input().tensor().set_layout(ov.Layout("NCHW"))
    ppp.input().model().set_layout(ov.Layout("NHWC"))
    model = ppp.build()
    model.input(0).get_tensor().set_names({source.face_name})
    model.output(0).get_tensor().set_names({source.prob_name})
    return model


def read_rt_metadata(model: "ov.Model") -> dict[str, Any] | None:
    """The metadata stored in an ov.Model's rt_info (None when absent)."""
    if not model.has_rt_info([RT_INFO_KEY]):
        return None
    return md.loads(model.get_rt_info([RT_INFO_KEY]).astype(str), "OpenVINO rt_info['{}']".format(RT_INFO_KEY))


def openvino_predictor(xml_path: str) -> Callable[[np.ndarray], np.ndarray]:
    """predict(x NCHW float32) -> probabilities with the OpenVINO runtime on CPU (f32 inference)."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(xml_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    output = compiled.output(0)

    def predict(x):
        return np.concatenate([compiled(x[i : i + 256])[output] for i in range(0, len(x), 256)])

    return predict


def export_openvino(
    savedmodel_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    faces: npt.ArrayLike | None = None,
    data: str | os.PathLike[str] | None = None,
    force: bool = False,
    name: str = "model",
    limit: int = parity.DEFAULT_LIMIT,
    log: Callable[[str], None] | None = None,
) -> str:
    """SavedModel -> ``out_dir/<name>.xml`` + ``.bin`` + metadata sidecar; returns the .xml path."""
    import openvino as ov

    stem = stem_of(name)
    refuse_existing(out_dir, force)
    check_faces, described = parity.parity_faces(faces, data, limit)
    source = SavedModelSource(savedmodel_dir)
    meta = md.with_layout(source.meta, LAYOUT)
    with staged_output(out_dir, force) as stage:
        xml = os.path.join(stage, stem + ".xml")
        model = to_openvino(source)
        model.set_rt_info(md.dumps(meta), [RT_INFO_KEY])
        for fp16 in (True, False):
            try:
                _write_checked(ov, model, xml, fp16, source, meta, check_faces, described, log)
                break
            except ParityError as exc:
                if not fp16:
                    raise
                say(log, "FP16 weights miss the tolerance ({}); writing FP32 weights".format(exc))
        result = final_path(stage, out_dir, xml)
    return result


def _write_checked(
    ov: Any,
    model: "ov.Model",
    xml: str,
    fp16: bool,
    source: SavedModelSource,
    meta: dict[str, Any],
    check_faces: np.ndarray,
    described: str,
    log: Callable[[str], None] | None,
) -> None:
    """Save the IR (FP16 or FP32 weights), read it back, check its input, metadata and parity."""
    ov.save_model(model, xml, compress_to_fp16=fp16)
    md.write(meta, md.sidecar_path(xml))
    written = ov.Core().read_model(xml)
    shape = written.input(0).get_partial_shape()
    want = ov.PartialShape([-1, source.channels, source.height, source.width])
    if not shape.same_scheme(want) or written.input(0).get_any_name() != source.face_name:
        raise ConversionError(
            "OpenVINO IR input is {} {} (expected {} {})".format(
                written.input(0).get_names(), shape, source.face_name, want
            )
        )
    say(
        log,
        "OpenVINO IR: input {} {}, output {} {}, {} weights".format(
            source.face_name, shape, source.prob_name, written.output(0).get_partial_shape(), "FP16" if fp16 else "FP32"
        ),
    )
    if read_rt_metadata(written) != meta:
        raise ConversionError("the metadata did not survive in the IR's rt_info")
    say(log, "checking with the OpenVINO runtime (CPU) on {}".format(described))
    parity.check("OpenVINO IR (CPU)", source, openvino_predictor(xml), check_faces, LAYOUT, ATOL, log=log)
