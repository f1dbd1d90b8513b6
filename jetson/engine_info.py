"""What a TensorRT engine is tied to and whether it can run here: its file name, its sidecar, the
runtime key (TensorRT version, GPU, compute capability, CUDA driver) and the one staleness rule
(:func:`runtime_staleness`, applied by the backend to every engine it loads; :func:`engine_staleness`
adds what makes a built engine stale for its ONNX). Device code: Python 3.6, standard library only.
"""

import os
import re

from edge import metadata as md
from edge.files import sha256_file

ENGINE_SUFFIX = ".engine"
RUNTIME_FIELDS = ("tensorrt_version", "gpu", "compute_capability", "cuda_driver")


def slug(text):
    """'NVIDIA Tegra X1' -> 'nvidia-tegra-x1'."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "unknown"


def engine_filename(stem, trt_version, precision, gpu, capability=None):
    """``<stem>.trt<version>.<precision>.<gpu-slug>[.sm<capability>].engine``."""
    sm = ".sm" + str(capability).replace(".", "") if capability else ""
    return "{}.trt{}.{}.{}{}{}".format(stem, trt_version, precision, slug(gpu), sm, ENGINE_SUFFIX)


def runtime_key(trt_version, device):
    """What an engine is tied to: TensorRT version + the device (``trt_backend.DeviceInfo``)."""
    return {
        "tensorrt_version": str(trt_version),
        "gpu": str(device.name),
        "compute_capability": str(device.compute_capability),
        "cuda_driver": str(device.cuda_driver),
    }


def read_engine_info(engine_path):
    """The sidecar of an engine (metadata + 'engine' section), or None when missing/unreadable."""
    try:
        info = md.read(md.sidecar_path(engine_path))
    except md.MetadataError:
        return None
    return info if isinstance(info.get("engine"), dict) else None


def runtime_staleness(info, key):
    """Why an engine (its sidecar ``info``) cannot run with this runtime ``key``, or None."""
    engine = (info or {}).get("engine") or {}
    reasons = []
    names = {
        "tensorrt_version": "TensorRT",
        "gpu": "GPU",
        "compute_capability": "compute capability",
        "cuda_driver": "CUDA driver",
    }
    for field in RUNTIME_FIELDS:
        built, here = engine.get(field), key.get(field)
        if built is None:
            reasons.append("its sidecar does not say which {} built it".format(names[field]))
        elif str(built) != str(here):
            reasons.append(
                "built with {} {!r}, this is {!r}".format(names[field], built, here)
                if field != "tensorrt_version"
                else "built with TensorRT {}, this is TensorRT {}".format(built, here)
            )
    return "; ".join(reasons) or None


def engine_staleness(engine_path, onnx_path, key, max_batch=None, precision=None, onnx_sha256=None):
    """Why the engine must be (re)built for ``onnx_path`` here, or None when it is current
    (``onnx_sha256``: the ONNX's checksum when the caller has it already)."""
    if not os.path.isfile(engine_path):
        return "no engine at {}".format(engine_path)
    info = read_engine_info(engine_path)
    if info is None:
        return "no readable sidecar {}".format(md.sidecar_path(engine_path))
    engine = info["engine"]
    if engine.get("onnx_sha256") != (onnx_sha256 or sha256_file(onnx_path)):
        return "the ONNX model changed"
    reason = runtime_staleness(info, key)
    if reason:
        return reason
    if max_batch is not None and engine.get("max_batch") != int(max_batch):
        return "built for max batch {}".format(engine.get("max_batch"))
    if precision is not None and engine.get("precision") != precision:
        return "built as {}".format(engine.get("precision"))
    return None
