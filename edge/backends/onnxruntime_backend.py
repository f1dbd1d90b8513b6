"""ONNX Runtime backend (CPU, or CUDA when onnxruntime-gpu provides it)."""

import numpy as np

from .base import Backend, BackendError, ModelFileError


def session_options(ort, threads=0, spinning=False):
    """SessionOptions for a small CPU shared with the rest of the agent loop.

    ONNX Runtime's worker threads spin between calls by default; on 2-4 cores that steals the
    CPU the capture, detector and tracker need between inferences (measured: 1.5-1.8x slower
    Haar detection beside a spinning pool). ``threads``: intra-op threads (0: ORT's default).
    """
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path, meta, providers=None, threads=0, spinning=False):
        Backend.__init__(self, path, meta)
        import onnxruntime as ort

        available = ort.get_available_providers()
        chosen = [p for p in (providers or available) if p in available]
        try:
            self.session = ort.InferenceSession(
                path, sess_options=session_options(ort, threads, spinning), providers=chosen
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelFileError("{}: ONNX Runtime cannot load the model ({})".format(path, exc)) from exc
        self.input_name = self.session.get_inputs()[0].name

    def run(self, batch):
        try:
            outputs = self.session.run(None, {self.input_name: batch})
        except Exception as exc:
            raise BackendError(
                "{}: ONNX Runtime inference failed on input {} ({})".format(
                    self.path, getattr(batch, "shape", "?"), exc
                )
            ) from exc
        return [np.asarray(o, dtype=np.float32) for o in outputs]
