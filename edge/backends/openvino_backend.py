"""OpenVINO runtime backend (Intel CPUs/GPUs: DeepLens hardware run standalone, NUCs)."""

import numpy as np

from .base import Backend, BackendError


class OpenVinoBackend(Backend):
    name = "openvino"
    suffixes = (".xml",)
    requires = ("openvino",)

    def __init__(self, path, meta, device="CPU"):
        Backend.__init__(self, path, meta)
        import openvino as ov
        try:
            core = ov.Core()
            self.compiled = core.compile_model(core.read_model(path), device)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise BackendError("{}: OpenVINO cannot load the model on {} ({})".format(path, device, exc))
        self.request = self.compiled.create_infer_request()

    def infer(self, batch):
        result = self.request.infer({0: batch})
        return np.asarray(result[self.compiled.output(0)], dtype=np.float32)
