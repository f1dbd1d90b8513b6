"""ONNX Runtime backend (CPU, or CUDA when onnxruntime-gpu provides it)."""

import numpy as np

from .base import Backend, BackendError


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    suffixes = (".onnx",)
    requires = ("onnxruntime",)

    def __init__(self, path, meta, providers=None, threads=0):
        Backend.__init__(self, path, meta)
        import onnxruntime as ort
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        available = ort.get_available_providers()
        chosen = [p for p in (providers or available) if p in available]
        try:
            self.session = ort.InferenceSession(path, sess_options=options, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError("{}: ONNX Runtime cannot load the model ({})".format(path, exc))
        self.input_name = self.session.get_inputs()[0].name

    def infer(self, batch):
        return np.asarray(self.session.run(None, {self.input_name: batch})[0], dtype=np.float32)
