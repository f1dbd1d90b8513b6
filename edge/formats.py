"""The one table of model artifact formats, shared by the converters and the backend loader.

Each row: the format name (``fer-edge convert NAME``), the suffix of its artifact file, the
Python modules its converter needs on the host, the runtimes (``edge.backends.RUNTIMES``) that
load it on a device, in order of preference, and what it is for. Plain data, Python 3.6
compatible, importable on devices.
"""

import collections

Format = collections.namedtuple("Format", "name suffix requires runtimes description")

FORMATS = (
    Format("onnx", ".onnx", ("tensorflow", "tf2onnx", "onnx", "onnxruntime"), ("onnxruntime", "openvino"),
           "ONNX opset <= 13, NCHW input [N,1,H,W], metadata in metadata_props; ops checked against "
           "TensorRT 8.2's ONNX parser; the source of TensorRT engines"),
    Format("openvino", ".xml", ("tensorflow", "openvino"), ("openvino",),
           "OpenVINO IR (.xml + .bin, FP16 weights), NCHW input, metadata in a sidecar and in rt_info"),
    Format("deeplens", ".tar.gz", ("tensorflow",), ("awscam",),
           "AWS DeepLens model artifact: a frozen TF1-style GraphDef (.pb, input 'face' NHWC, output "
           "'probabilities') and its metadata, in one .tar.gz"),
    Format("tensorrt", ".engine", ("tensorrt",), ("tensorrt",),
           "TensorRT engine built from the ONNX on the target GPU (TensorRT 8.2 on JetPack 4.6, or 10); "
           "pycuda for INT8 calibration and the engine check"),
)

NAMES = tuple(f.name for f in FORMATS)


def get(name):
    """The :class:`Format` row called ``name``; ValueError listing the known names otherwise."""
    for fmt in FORMATS:
        if fmt.name == name:
            return fmt
    raise ValueError("unknown format {!r}; choose from {}".format(name, ", ".join(NAMES)))


def for_path(path):
    """The format of an artifact file, by suffix (None when no format matches)."""
    for fmt in FORMATS:
        if str(path).endswith(fmt.suffix):
            return fmt
    return None
