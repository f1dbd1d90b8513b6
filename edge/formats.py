"""The one table of model artifact formats and the runtimes that load them.

Shared by the converters (``convert.formats``), the backend loader (``edge.backends``) and every
agent; face detectors and emotion classifiers use the same rows (what differs between the two
kinds of model lives in their metadata, ``edge.metadata``). Plain data, Python 3.6 compatible,
importable on devices: classes and functions are named as ``"module:attribute"`` and imported
only when used.

``FORMATS``: name (``fer-edge convert NAME``), artifact suffix, converter (host side), the Python
modules the converter needs, the runtimes that load the artifact in order of preference, and
what it is for. ``RUNTIMES``: runtime name, backend class, the modules it needs.
"""

import collections
import importlib

Format = collections.namedtuple("Format", "name suffix converter requires runtimes description")
Runtime = collections.namedtuple("Runtime", "name backend requires description")

FORMATS = (
    Format(
        "onnx",
        ".onnx",
        "convert.onnx_export:export_onnx",
        ("tensorflow", "tf2onnx", "onnx", "onnxruntime"),
        ("onnxruntime", "openvino"),
        "ONNX opset <= 13, dynamic batch, metadata in metadata_props (classifier input NCHW [N,1,H,W]); "
        "ops checked against TensorRT 8.2's ONNX parser; the source of TensorRT engines",
    ),
    Format(
        "openvino",
        ".xml",
        "convert.openvino_export:export_openvino",
        ("tensorflow", "openvino"),
        ("openvino", "awscam"),
        "OpenVINO IR (.xml + .bin, FP16 weights), metadata in a sidecar and in rt_info",
    ),
    Format(
        "deeplens",
        ".tar.gz",
        "convert.deeplens_export:export_deeplens",
        ("tensorflow",),
        ("awscam",),
        "AWS DeepLens model artifact: a frozen TF1-style GraphDef (.pb, input 'face' NHWC, output "
        "'probabilities') and its metadata, in one .tar.gz",
    ),
    Format(
        "tensorrt",
        ".engine",
        "convert.tensorrt_build:export_tensorrt",
        ("tensorrt",),
        ("tensorrt",),
        "TensorRT engine built from the ONNX on the target GPU (TensorRT 8.2 on JetPack 4.6, or 10); "
        "pycuda for INT8 calibration and the engine check",
    ),
)

RUNTIMES = (
    Runtime(
        "onnxruntime",
        "edge.backends.onnxruntime_backend:OnnxRuntimeBackend",
        ("onnxruntime",),
        "ONNX Runtime (CPU; CUDA with onnxruntime-gpu)",
    ),
    Runtime(
        "openvino",
        "edge.backends.openvino_backend:OpenVinoBackend",
        ("openvino",),
        "OpenVINO runtime (Intel CPU/GPU: DeepLens hardware standalone, NUCs)",
    ),
    Runtime(
        "tensorrt",
        "jetson.trt_backend:TensorRTBackend",
        ("tensorrt", "pycuda"),
        "TensorRT engine on an NVIDIA GPU (Jetson)",
    ),
    Runtime(
        "awscam",
        "deeplens.awscam_backend:AwscamBackend",
        ("awscam",),
        "the DeepLens inference engine (awscam.Model, after the device's model optimizer)",
    ),
)

NAMES = tuple(f.name for f in FORMATS)
RUNTIME_NAMES = tuple(r.name for r in RUNTIMES)


def _row(rows, name, what):
    for row in rows:
        if row.name == name:
            return row
    raise ValueError("unknown {} {!r}; choose from {}".format(what, name, ", ".join(r.name for r in rows)))


def get(name):
    """The :class:`Format` row called ``name``; ValueError listing the known names otherwise."""
    return _row(FORMATS, name, "format")


def for_path(path):
    """The format of an artifact file, by suffix (None when no format matches)."""
    for fmt in FORMATS:
        if str(path).endswith(fmt.suffix):
            return fmt
    return None


def runtime(name):
    """The :class:`Runtime` row called ``name``; ValueError listing the known names otherwise."""
    return _row(RUNTIMES, name, "runtime")


def suffixes_of(runtime_name):
    """The artifact suffixes a runtime loads (from the format rows that name it)."""
    return tuple(f.suffix for f in FORMATS if runtime_name in f.runtimes)


def resolve(target):
    """Import ``"module:attribute"`` and return the attribute."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
