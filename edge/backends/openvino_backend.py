"""OpenVINO runtime backend (Intel CPUs/GPUs: DeepLens hardware run standalone, NUCs)."""

import numpy as np

from .base import Backend, BackendError, ModelFileError


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(self, path, meta, device="CPU", precision="f32", threads=0):
        """``precision``: OpenVINO's inference precision hint. f32 by default: on CPUs with bf16
        units OpenVINO would otherwise run in bf16, about 5e-3 away from the trained model.
        ``threads``: CPU inference threads (0: OpenVINO's default)."""
        Backend.__init__(self, path, meta)
        import openvino as ov

        try:
            core = ov.Core()
            config = {}
            if device == "CPU":
                if precision:
                    config["INFERENCE_PRECISION_HINT"] = precision
                if threads:
                    config["INFERENCE_NUM_THREADS"] = int(threads)
            self.compiled = core.compile_model(core.read_model(path), device, config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise ModelFileError("{}: OpenVINO cannot load the model on {} ({})".format(path, device, exc)) from exc
        self.request = self.compiled.create_infer_request()

    def run(self, batch):
        try:
            result = self.request.infer({0: batch})
        except Exception as exc:
            raise BackendError(
                "{}: OpenVINO inference failed on input {} ({})".format(self.path, getattr(batch, "shape", "?"), exc)
            ) from exc
        return [np.asarray(result[out], dtype=np.float32) for out in self.compiled.outputs]
