"""The ONNX operators TensorRT 8.2's parser imports: the list lives in :mod:`jetson.trt_ops` (the
Jetson checks a model with it before building an engine); the host's conversions read it here."""

from jetson.trt_ops import MAX_OPSET, ONNX_DOMAINS, SOURCE, SUPPORTED_OPS, TENSORRT_VERSION, unsupported_nodes

__all__ = ["MAX_OPSET", "ONNX_DOMAINS", "SOURCE", "SUPPORTED_OPS", "TENSORRT_VERSION", "unsupported_nodes"]
