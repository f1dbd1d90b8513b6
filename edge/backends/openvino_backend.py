"""OpenVINO runtime backend (Intel CPUs/GPUs: DeepLens hardware run standalone, NUCs)."""

import numpy as np

from .base import Backend, BackendError


class OpenVinoBackend(Backend):
    name = "openvino"
    suffixes = (".xml",)
    requires = ("openvino",)

    def __init__(self, path, meta, device="CPU", precision="f32"):
        """``precision``: OpenVINO's inference precision hint. f32 by default: on CPUs with bf16
        units OpenVINO would otherwise run in bf16, about 5e-3 away from the trained model."""
        Backend.__init__(self, path, meta)
        import openvino as ov
        try:
            core = ov.Core()
            config = {"INFERENCE_PRECISION_HINT": precision} if precision and device == "CPU" else {}
            self.compiled = core.compile_model(core.read_model(path), device, config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise BackendError("{}: OpenVINO cannot load the model on {} ({})".format(path, device, exc))
        self.request = self.compiled.create_infer_request()

    def infer(self, batch):
        result = self.request.infer({0: batch})
        return np.asarray(result[self.compiled.output(0)], dtype=np.float32)
