"""The table of conversion formats: a plain data table, importable without TensorFlow.

Each row names a format, the suffix of its artifact file, the Python modules its converter needs
and what it is for. The converter functions live in their own modules and are imported lazily by
:func:`converter`, so agents and backend loaders can use the table on a device.

Every converter has the signature ``fn(savedmodel_dir, out_dir, **options) -> artifact path`` and
verifies the artifact numerically against the SavedModel before moving it into ``out_dir``.
"""

import collections
import importlib
import importlib.util

Format = collections.namedtuple("Format", "name suffix requires description")

FORMATS = (
    Format("onnx", ".onnx", ("tensorflow", "tf2onnx", "onnx", "onnxruntime"),
           "ONNX opset <= 13, NCHW input [N,1,H,W], metadata in metadata_props; ops checked against "
           "TensorRT 8.2's ONNX parser; the source of TensorRT engines"),
    Format("openvino", ".xml", ("tensorflow", "openvino"),
           "OpenVINO IR (.xml + .bin, FP16 weights), NCHW input, metadata in a sidecar and in rt_info"),
    Format("deeplens", ".tar.gz", ("tensorflow",),
           "AWS DeepLens model artifact: a frozen TF1-style GraphDef (.pb, input 'face' NHWC, output "
           "'probabilities') and its metadata, in one .tar.gz"),
    Format("tensorrt", ".engine", ("tensorrt",),
           "TensorRT engine built from the ONNX on the target GPU (TensorRT 8.2 on JetPack 4.6, or 10); "
           "pycuda for INT8 calibration and the engine check"),
)

# name -> (module, function); kept apart from FORMATS so the table stays plain data.
_CONVERTERS = {
    "onnx": ("convert.onnx_export", "export_onnx"),
    "openvino": ("convert.openvino_export", "export_openvino"),
    "deeplens": ("convert.deeplens_export", "export_deeplens"),
    "tensorrt": ("convert.tensorrt_build", "export_tensorrt"),
}

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


def missing_requirements(name):
    """The modules format ``name`` needs that cannot be imported here (without importing them)."""
    return [m for m in get(name).requires if importlib.util.find_spec(m) is None]


def converter(name):
    """The converter function of format ``name`` (imports its module now)."""
    get(name)
    module, function = _CONVERTERS[name]
    return getattr(importlib.import_module(module), function)
