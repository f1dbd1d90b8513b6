"""ONNX -> TensorRT engine, on the GPU that will run it (TensorRT 8.2 on JetPack 4.6, or TensorRT 10).

Device code: Python 3.6 syntax, only the standard library and numpy at import; ``tensorrt`` and
``pycuda`` are imported inside the functions that need them (``import_tensorrt`` raises a clear
ConversionError when TensorRT is missing). Run on the Jetson (the bundle's install.sh does)::

    python3 -m convert.tensorrt_build model.onnx --precision fp16 --max-batch 8

Engines are specific to the TensorRT version and the GPU, so the engine file is named
``<stem>.trt<version>.<precision>.<gpu-slug>.engine`` (e.g.
``model.trt8.2.1.8.fp16.nvidia-tegra-x1.engine``) and comes with a JSON sidecar
(``<engine>.fer_edge.json``: the model metadata plus an ``engine`` section holding the sha256 of the
source ONNX, TensorRT version, precision, GPU name, batch range and the equivalent trtexec command).
:func:`build_or_reuse` rebuilds only when :func:`engine_staleness` finds a reason.

Network: explicit batch (TensorRT 8 flag; the only mode in 10), one optimisation profile for batch
1..max (opt 4), input ``face`` [N, 1, H, W] float32 0..255, output ``probabilities`` [N, 8].
Precision: fp16 when the GPU has fast FP16; int8 (with FP16 fallback layers) only when it has fast
INT8, calibrated with IInt8EntropyCalibrator2 on real faces preprocessed by
``edge.preprocess.prepare_faces``; otherwise the next lower precision, said in the log and the name.
"""

import argparse
import ctypes
import datetime
import hashlib
import os
import re
import sys

import numpy as np

from edge import metadata as md

from edge.onnx_meta import onnx_model_metadata  # noqa: F401  (the one reader; also used by jetson/)

from .errors import ConversionError

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_PRECISION = "fp16"
DEFAULT_MAX_BATCH = 8
DEFAULT_OPT_BATCH = 4
DEFAULT_WORKSPACE_MB = 256
ENGINE_SUFFIX = ".engine"
# Engine check tolerances on probabilities (fp32 may run as TF32 on Ampere GPUs such as Orin).
ATOL = {"fp32": 1e-3, "fp16": 1e-2}
INT8_MIN_AGREEMENT = 0.9

NOT_INSTALLED = ("TensorRT is not installed (no Python module 'tensorrt'): build the engine on the Jetson "
                 "(the bundle's install.sh does) or on a host with TensorRT")


def import_tensorrt():
    """The ``tensorrt`` module, or ConversionError saying where engines can be built."""
    try:
        import tensorrt
    except ImportError as exc:
        raise ConversionError("{} ({})".format(NOT_INSTALLED, exc))
    if not hasattr(tensorrt, "__version__") or not hasattr(tensorrt, "Builder"):
        # e.g. only the type stubs (tensorrt-stubs) are installed: an empty namespace package
        raise ConversionError("{} (the 'tensorrt' found at {} has no runtime: type stubs only?)".format(
            NOT_INSTALLED, getattr(tensorrt, "__path__", None)))
    if version_major(tensorrt.__version__) >= 11:
        raise ConversionError("TensorRT {} is not supported: 11 removed the FP16/INT8 builder flags and the "
                              "calibrators this builder uses (supported: 8.x, 10.x)".format(tensorrt.__version__))
    return tensorrt


def version_major(version):
    return int(str(version).split(".")[0])


# ---------------------------------------------------------------- naming, checksums, GPU (no TensorRT needed)


def slug(text):
    """'NVIDIA Tegra X1' -> 'nvidia-tegra-x1'."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "unknown"


def engine_filename(stem, trt_version, precision, gpu):
    """``<stem>.trt<version>.<precision>.<gpu-slug>.engine``."""
    return "{}.trt{}.{}.{}{}".format(stem, trt_version, precision, slug(gpu), ENGINE_SUFFIX)


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gpu_info(device=0):
    """(name, compute capability 'major.minor' or None) of CUDA device ``device``, through the driver API.

    Falls back to the Jetson's /proc/device-tree/model, then ('unknown-gpu', None).
    """
    for lib in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            cuda = ctypes.CDLL(lib)
        except OSError:
            continue
        dev = ctypes.c_int()
        name = ctypes.create_string_buffer(256)
        if cuda.cuInit(0) == 0 and cuda.cuDeviceGet(ctypes.byref(dev), device) == 0 and \
                cuda.cuDeviceGetName(name, 256, dev) == 0:
            major, minor = ctypes.c_int(), ctypes.c_int()
            capability = None
            # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75, _MINOR = 76
            if cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, dev) == 0 and \
                    cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev) == 0:
                capability = "{}.{}".format(major.value, minor.value)
            return name.value.decode("utf-8", "replace").strip(), capability
        break
    try:
        with open("/proc/device-tree/model", "rb") as handle:
            model = handle.read().decode("utf-8", "replace").strip("\x00 \n")
        if model:
            return model, None
    except OSError:
        pass
    return "unknown-gpu", None


def gpu_name(device=0):
    return gpu_info(device)[0]


def read_engine_info(engine_path):
    """The sidecar of an engine (metadata + 'engine' section), or None when missing/unreadable."""
    sidecar = md.sidecar_path(engine_path)
    try:
        info = md.read(sidecar)
    except md.MetadataError:
        return None
    return info if isinstance(info.get("engine"), dict) else None


def engine_staleness(engine_path, onnx_path, trt_version, gpu, max_batch=None, precision=None):
    """Why the engine must be (re)built, or None when it matches the ONNX, TensorRT and GPU."""
    if not os.path.isfile(engine_path):
        return "no engine at {}".format(engine_path)
    info = read_engine_info(engine_path)
    if info is None:
        return "no readable sidecar {}".format(md.sidecar_path(engine_path))
    engine = info["engine"]
    checks = [
        ("onnx_sha256", sha256_file(onnx_path), "the ONNX model changed"),
        ("tensorrt_version", str(trt_version), "built with TensorRT {}".format(engine.get("tensorrt_version"))),
        ("gpu", str(gpu), "built for GPU {!r}".format(engine.get("gpu"))),
    ]
    if max_batch is not None:
        checks.append(("max_batch", int(max_batch), "built for max batch {}".format(engine.get("max_batch"))))
    if precision is not None:
        checks.append(("precision", precision, "built as {}".format(engine.get("precision"))))
    for key, want, reason in checks:
        if engine.get(key) != want:
            return reason
    return None


def engine_is_current(engine_path, onnx_path, trt_version=None, gpu=None):
    """True when the engine's sidecar matches the ONNX checksum, the TensorRT version and the GPU.

    ``trt_version``/``gpu`` default to the installed TensorRT and the CUDA device 0.
    """
    if trt_version is None:
        trt_version = import_tensorrt().__version__
    if gpu is None:
        gpu = gpu_name()
    return engine_staleness(engine_path, onnx_path, trt_version, gpu) is None


def trtexec_command(onnx_path, engine_path, precision, input_name, item_shape, max_batch=DEFAULT_MAX_BATCH,
                    opt_batch=DEFAULT_OPT_BATCH, workspace_mb=DEFAULT_WORKSPACE_MB, trt_version="8.2",
                    calib_cache=None, fp16_fallback=True):
    """The trtexec command line building the same engine (for logs and manual builds).

    ``item_shape``: the input's dimensions after the batch (C, H, W for the classifier's NCHW faces;
    H, W, C for the detector's NHWC frames)."""
    def shape(n):
        return "{}:{}".format(input_name, "x".join(str(d) for d in (n,) + tuple(item_shape)))
    args = ["trtexec", "--onnx=" + onnx_path, "--saveEngine=" + engine_path]
    major = version_major(trt_version)
    if major < 10:
        args.append("--explicitBatch")
    args += ["--minShapes=" + shape(1), "--optShapes=" + shape(min(opt_batch, max_batch)),
             "--maxShapes=" + shape(max_batch)]
    minor = int(str(trt_version).split(".")[1]) if "." in str(trt_version) else 0
    if major >= 10 or (major == 8 and minor >= 4):
        args.append("--memPoolSize=workspace:{}".format(workspace_mb))  # MiB
    else:
        args.append("--workspace={}".format(workspace_mb))  # MiB (TensorRT <= 8.3)
    if precision == "fp16" or (precision == "int8" and fp16_fallback):
        args.append("--fp16")
    if precision == "int8":
        args.append("--int8")
        if calib_cache:
            args.append("--calib=" + calib_cache)  # without a cache trtexec uses placeholder scales
    return " ".join(args)


# ---------------------------------------------------------------- TensorRT


def _logger(trt):
    return trt.Logger(trt.Logger.WARNING)


def _create_network(trt, builder):
    if version_major(trt.__version__) >= 10:
        return builder.create_network(0)  # explicit batch is the only mode
    flag = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return builder.create_network(flag)


def _set_workspace(trt, config, workspace_mb):
    size = int(workspace_mb) << 20
    if version_major(trt.__version__) >= 10:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, size)
    else:
        config.max_workspace_size = size  # TensorRT 8.x (deprecated from 8.4, still there)


def _fast(builder, what):
    # platform_has_fast_fp16/int8 are deprecated in TensorRT 10 (assumed True there when gone).
    return bool(getattr(builder, "platform_has_fast_" + what, True))


def effective_precision(builder, precision, log=None):
    """The precision the GPU supports well: int8 -> fp16 -> fp32 as needed (logged)."""
    if precision not in PRECISIONS:
        raise ConversionError("precision must be one of {}, got {!r}".format(", ".join(PRECISIONS), precision))
    if precision == "int8" and not _fast(builder, "int8"):
        _say(log, "this GPU has no fast INT8 (e.g. the Jetson Nano's Maxwell GPU): building fp16 instead")
        precision = "fp16"
    if precision == "fp16" and not _fast(builder, "fp16"):
        _say(log, "this GPU has no fast FP16: building fp32 instead")
        precision = "fp32"
    return precision


def _say(log, message):
    if log is not None:
        log(message)


def _make_calibrator(trt, batches, cache_path):
    """An IInt8EntropyCalibrator2 feeding ``batches`` (float32 NCHW arrays of the OPT batch size)."""
    import pycuda.autoinit  # noqa: F401  (creates the CUDA context)
    import pycuda.driver as cuda

    class FaceCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[name-defined]
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)  # required for TensorRT's Python trampolines
            self.batches = [np.ascontiguousarray(b, dtype=np.float32) for b in batches]
            self.index = 0
            self.device_input = cuda.mem_alloc(self.batches[0].nbytes)

        def get_batch_size(self):
            # Explicit-batch network: the batch size is the first dimension of each array, which
            # must equal the calibration profile's OPT shape; TensorRT expects 1 here.
            return 1

        def get_batch(self, names):
            if self.index >= len(self.batches):
                return None
            cuda.memcpy_htod(self.device_input, self.batches[self.index])
            self.index += 1
            return [int(self.device_input)]

        def read_calibration_cache(self):
            if cache_path and os.path.isfile(cache_path):
                with open(cache_path, "rb") as handle:
                    return handle.read()
            return None

        def write_calibration_cache(self, cache):
            if cache_path:
                with open(cache_path, "wb") as handle:
                    handle.write(cache)

    return FaceCalibrator()


def calibration_batches(faces, meta, opt_batch):
    """Real faces -> float32 NCHW batches of exactly ``opt_batch`` faces (the rest dropped)."""
    from edge.preprocess import prepare_faces
    x = prepare_faces(faces, md.with_layout(meta, "NCHW"))
    n = (len(x) // opt_batch) * opt_batch
    if n == 0:
        raise ConversionError("INT8 calibration needs at least {} faces, got {}".format(opt_batch, len(x)))
    return [x[i:i + opt_batch] for i in range(0, n, opt_batch)]


def _parse_onnx(trt, builder, logger, onnx_path, meta):
    network = _create_network(trt, builder)
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, "rb") as handle:
        parsed = parser.parse(handle.read())
    if not parsed:
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ConversionError("{}: TensorRT {}'s ONNX parser failed: {}".format(onnx_path, trt.__version__, errors))
    if network.num_inputs != 1 or network.num_outputs < 1:
        raise ConversionError("{}: expected one input and at least one output, found {} and {}".format(
            onnx_path, network.num_inputs, network.num_outputs))
    inp = network.get_input(0)
    shape = tuple(inp.shape)
    want = (-1,) + tuple(md.input_shape(meta)[1:])
    if shape != want:
        raise ConversionError("{}: input '{}' has shape {} but the metadata says {} ({}, dynamic batch)".format(
            onnx_path, inp.name, shape, want, meta["input"]["layout"]))
    outputs = [network.get_output(i).name for i in range(network.num_outputs)]
    # keep the parser alive as long as the network (it owns the weights in TensorRT 8)
    return network, parser, inp.name, outputs


def build_engine(onnx_path, engine_path, meta, precision=DEFAULT_PRECISION, max_batch=DEFAULT_MAX_BATCH,
                 opt_batch=DEFAULT_OPT_BATCH, workspace_mb=DEFAULT_WORKSPACE_MB, calibration_faces=None,
                 calib_cache=None, log=None):
    """Build and write an engine (atomically); returns (precision used, input name, output names)."""
    trt = import_tensorrt()
    logger = _logger(trt)
    builder = trt.Builder(logger)
    precision = effective_precision(builder, precision, log)
    network, parser, input_name, output_names = _parse_onnx(trt, builder, logger, onnx_path, meta)
    config = builder.create_builder_config()
    _set_workspace(trt, config, workspace_mb)
    item = tuple(md.input_shape(meta)[1:])
    opt = max(1, min(opt_batch, max_batch))
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, (1,) + item, (opt,) + item, (max_batch,) + item)
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8") and _fast(builder, "fp16"):
        config.set_flag(trt.BuilderFlag.FP16)
    calibrator = None
    if precision == "int8":
        if calibration_faces is None:
            raise ConversionError("INT8 needs real calibration faces (uint8 [N,48,48]); none were given")
        config.set_flag(trt.BuilderFlag.INT8)
        calibrator = _make_calibrator(trt, calibration_batches(calibration_faces, meta, opt), calib_cache)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(profile)  # calibration runs at the profile's OPT shape
    _say(log, "building a {} engine with TensorRT {} (batch 1..{}, opt {}); this takes minutes on a Jetson".format(
        precision, trt.__version__, max_batch, opt))
    if hasattr(builder, "build_serialized_network"):
        serialized = builder.build_serialized_network(network, config)
    else:  # TensorRT 7
        engine = builder.build_engine(network, config)
        serialized = engine.serialize() if engine is not None else None
    if serialized is None:
        raise ConversionError("TensorRT could not build the engine from {} (see the TensorRT log above)".format(
            onnx_path))
    tmp = engine_path + ".tmp"
    try:
        with open(tmp, "wb") as handle:
            handle.write(serialized)
        os.replace(tmp, engine_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    del parser, calibrator
    return precision, input_name, output_names


def engine_predictor(engine_path, input_name, output_name, max_batch):
    """predict(x NCHW float32) -> probabilities with a TensorRT engine (pycuda buffers)."""
    trt = import_tensorrt()
    import pycuda.autoinit  # noqa: F401
    import pycuda.driver as cuda
    runtime = trt.Runtime(_logger(trt))
    with open(engine_path, "rb") as handle:
        engine = runtime.deserialize_cuda_engine(handle.read())
    if engine is None:
        raise ConversionError("{}: TensorRT {} cannot load this engine".format(engine_path, trt.__version__))
    context = engine.create_execution_context()
    v10 = version_major(trt.__version__) >= 10
    state = {}

    def predict(x):
        outs = []
        for i in range(0, len(x), max_batch):
            chunk = np.ascontiguousarray(x[i:i + max_batch], dtype=np.float32)
            if v10:
                context.set_input_shape(input_name, chunk.shape)
                out_shape = tuple(context.get_tensor_shape(output_name))
            else:
                in_index = engine.get_binding_index(input_name)
                out_index = engine.get_binding_index(output_name)
                context.set_binding_shape(in_index, chunk.shape)
                out_shape = tuple(context.get_binding_shape(out_index))
            out = np.empty(out_shape, dtype=np.float32)
            if "in" not in state:
                state["in"] = cuda.mem_alloc(chunk[:1].nbytes * max_batch)
                state["out"] = cuda.mem_alloc(out[:1].nbytes * max_batch)
            cuda.memcpy_htod(state["in"], chunk)
            if v10:
                context.set_tensor_address(input_name, int(state["in"]))
                context.set_tensor_address(output_name, int(state["out"]))
                stream = cuda.Stream()
                ok = context.execute_async_v3(stream.handle)
                stream.synchronize()
            else:
                bindings = [0] * engine.num_bindings
                bindings[in_index] = int(state["in"])
                bindings[out_index] = int(state["out"])
                ok = context.execute_v2(bindings)
            if not ok:
                raise ConversionError("{}: TensorRT inference failed".format(engine_path))
            cuda.memcpy_dtoh(out, state["out"])
            outs.append(out)
        return np.concatenate(outs)
    return predict


def load_check_set(path):
    """(uint8 faces, reference probabilities) from an .npz with 'faces' and 'probabilities'."""
    with np.load(path, allow_pickle=False) as z:
        return np.array(z["faces"]), np.array(z["probabilities"])


def check_engine(predict, meta, faces, expected, precision, log=None):
    """Engine vs reference probabilities (from the SavedModel) on the same faces; a ParityReport."""
    from edge.preprocess import prepare_faces

    from .parity import compare
    got = predict(prepare_faces(faces, md.with_layout(meta, "NCHW")))
    what = "TensorRT {} engine".format(precision)
    if precision == "int8":
        report = compare(what, expected, got, atol=1.0, tie_margin=1.0)  # INT8: agreement rate below
        if report.argmax_agree < INT8_MIN_AGREEMENT * report.faces:
            raise ConversionError("{}: same top emotion as the SavedModel on only {}/{} faces (< {:.0%})".format(
                what, report.argmax_agree, report.faces, INT8_MIN_AGREEMENT))
    else:
        report = compare(what, expected, got, atol=ATOL[precision])
    _say(log, str(report))
    return report


def build_or_reuse(onnx_path, out_dir=None, precision=DEFAULT_PRECISION, max_batch=DEFAULT_MAX_BATCH,
                   opt_batch=DEFAULT_OPT_BATCH, workspace_mb=DEFAULT_WORKSPACE_MB, calibration_faces=None,
                   check=None, meta=None, stem=None, force=False, log=print):
    """The engine for ``onnx_path`` on this GPU: reused when current, else built; returns its path.

    ``check``: (uint8 faces, reference probabilities) or an .npz path holding both, to verify the
    engine against the SavedModel's outputs; ``calibration_faces``: uint8 faces for INT8.
    """
    trt = import_tensorrt()
    onnx_path = os.path.abspath(str(onnx_path))
    if not os.path.isfile(onnx_path):
        raise ConversionError("{}: ONNX model not found".format(onnx_path))
    meta = md.validate(meta if meta is not None else onnx_model_metadata(onnx_path))
    if md.kind_of(meta) == md.CLASSIFIER and meta["input"]["layout"] != "NCHW":
        raise ConversionError("{}: metadata layout {} (TensorRT engines take the NCHW ONNX)".format(
            onnx_path, meta["input"]["layout"]))
    if max_batch < 1:
        raise ConversionError("max batch must be >= 1, got {}".format(max_batch))
    out_dir = os.path.abspath(str(out_dir or os.path.dirname(onnx_path)))
    os.makedirs(out_dir, exist_ok=True)
    stem = stem or os.path.splitext(os.path.basename(onnx_path))[0]
    gpu, capability = gpu_info()
    actual = effective_precision(trt.Builder(_logger(trt)), precision, log)
    engine_path = os.path.join(out_dir, engine_filename(stem, trt.__version__, actual, gpu))
    reason = "rebuild forced" if force else engine_staleness(engine_path, onnx_path, trt.__version__, gpu,
                                                             max_batch, actual)
    if reason is None:
        _say(log, "reusing {} (matches the ONNX, TensorRT {} and {})".format(engine_path, trt.__version__, gpu))
        return engine_path
    _say(log, "building {}: {}".format(os.path.basename(engine_path), reason))
    calib_cache = os.path.join(out_dir, "{}.trt{}.calib".format(stem, trt.__version__)) if actual == "int8" else None
    input_name = meta["input"].get("name", "face")
    item = tuple(md.input_shape(meta)[1:])
    command = trtexec_command(os.path.basename(onnx_path), os.path.basename(engine_path), actual, input_name, item,
                              max_batch, opt_batch, workspace_mb, trt.__version__,
                              calib_cache and os.path.basename(calib_cache))
    _say(log, "equivalent trtexec command (in {}):\n  {}".format(out_dir, command))
    sidecar = md.sidecar_path(engine_path)
    if os.path.exists(sidecar):
        os.remove(sidecar)  # an engine without its sidecar is never taken as current
    actual, input_name, output_names = build_engine(onnx_path, engine_path, meta, actual, max_batch, opt_batch,
                                                    workspace_mb, calibration_faces, calib_cache, log)
    output_name = output_names[0]
    report = None
    if check is not None and md.kind_of(meta) != md.CLASSIFIER:
        _say(log, "engine check sets are for classifiers; the detector engine is not verified numerically here")
        check = None
    if check is not None:
        faces, expected = load_check_set(check) if isinstance(check, str) else check
        predict = engine_predictor(engine_path, input_name, output_name, max_batch)
        try:
            report = check_engine(predict, meta, faces, expected, actual, log)
        except ConversionError:
            os.remove(engine_path)
            raise
    else:
        _say(log, "engine not verified numerically: no reference outputs given (check=...)")
    info = dict(meta)
    info["engine"] = {
        "file": os.path.basename(engine_path),
        "onnx": os.path.basename(onnx_path),
        "onnx_sha256": sha256_file(onnx_path),
        "tensorrt_version": trt.__version__,
        "precision": actual,
        "requested_precision": precision,
        "gpu": gpu,
        "compute_capability": capability,
        "input": input_name,
        "output": output_name,
        "outputs": list(output_names),
        "min_batch": 1,
        "opt_batch": max(1, min(opt_batch, max_batch)),
        "max_batch": int(max_batch),
        "workspace_mb": int(workspace_mb),
        "built": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "trtexec": command,
        "check": report.as_dict() if report is not None else None,
    }
    md.write(info, sidecar)
    return engine_path


def export_tensorrt(savedmodel_dir, out_dir, faces=None, data=None, opset=None, force=False, name="model",
                    limit=None, precision=DEFAULT_PRECISION, max_batch=DEFAULT_MAX_BATCH, log=None):
    """Host-side converter: SavedModel -> ONNX (checked) -> engine for this machine's GPU, in ``out_dir``.

    The engine is verified against the SavedModel on real faces (the parity faces also calibrate
    INT8). Returns the engine path; ``out_dir`` also holds the ONNX it was built from.
    """
    import_tensorrt()  # before any work: say at once when TensorRT is missing
    from . import parity
    from .common import SavedModelSource, final_path, refuse_existing, staged_output, stem_of
    from .onnx_export import ATOL as ONNX_ATOL
    from .onnx_export import DEFAULT_OPSET, LAYOUT, onnxruntime_predictor, write_onnx
    from edge.preprocess import prepare_faces
    stem = stem_of(name)
    refuse_existing(out_dir, force)
    check_faces, described = parity.parity_faces(faces, data, parity.DEFAULT_LIMIT if limit is None else limit)
    source = SavedModelSource(savedmodel_dir)
    with staged_output(out_dir, force) as stage:
        onnx_path = write_onnx(source, os.path.join(stage, stem + ".onnx"), DEFAULT_OPSET if opset is None else opset, log)
        _say(log, "checking with ONNX Runtime on {}".format(described))
        parity.check("ONNX (onnxruntime)", source, onnxruntime_predictor(onnx_path), check_faces, LAYOUT,
                     ONNX_ATOL, log=log)
        expected = source.predict(prepare_faces(check_faces, source.meta))
        engine = build_or_reuse(onnx_path, stage, precision, max_batch, calibration_faces=check_faces,
                                check=(check_faces, expected), stem=stem, force=True, log=log)
        result = final_path(stage, out_dir, engine)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m convert.tensorrt_build",
                                     description="Build (or reuse) the TensorRT engine of a fer-edge ONNX model.")
    parser.add_argument("onnx", help="ONNX model from `fer-edge convert onnx` (metadata embedded)")
    parser.add_argument("--out-dir", help="folder for the engine and its sidecar (default: beside the ONNX)")
    parser.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION)
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH)
    parser.add_argument("--opt-batch", type=int, default=DEFAULT_OPT_BATCH)
    parser.add_argument("--workspace-mb", type=int, default=DEFAULT_WORKSPACE_MB)
    parser.add_argument("--calibration-faces", help=".npy of uint8 faces [N,48,48] for INT8 calibration")
    parser.add_argument("--check", help=".npz with 'faces' (uint8) and 'probabilities' (SavedModel outputs)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the engine is current")
    args = parser.parse_args(argv)
    try:
        calib = np.load(args.calibration_faces, allow_pickle=False) if args.calibration_faces else None
        path = build_or_reuse(args.onnx, args.out_dir, args.precision, args.max_batch, args.opt_batch,
                              args.workspace_mb, calib, args.check, force=args.force, log=print)
    except (ValueError, OSError) as exc:
        print("tensorrt_build: error: {}".format(exc), file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
