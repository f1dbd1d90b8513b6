"""NVIDIA's TensorRT builder: ONNX -> serialized engine (TensorRT 8.2 on JetPack 4.6, or TensorRT 10).

Device code: Python 3.6 syntax, numpy at import; ``tensorrt``/``pycuda`` come in through
``jetson.trt_backend``. :class:`TensorRTBuilder` is what ``jetson.engine.build_or_reuse`` calls;
tests without a GPU replace it by a double.

Network: explicit batch (TensorRT 8 flag; the only mode in 10), one optimisation profile for batch
1..max (opt 4), the model's input as its metadata says (``face`` [N, 1, H, W] float32 0..255 for the
classifier, ``image`` [N, H, W, 3] for the detector). Precision: fp16 when the GPU has fast FP16;
int8 (with FP16 fallback layers) only when it has fast INT8, calibrated with
IInt8EntropyCalibrator2 on real faces preprocessed by ``edge.preprocess.prepare_faces``; otherwise
the next lower precision, said in the log and in the engine's name.

API differences handled (TensorRT 8.2 vs 10): ``create_network(EXPLICIT_BATCH flag)`` vs
``create_network(0)``; ``config.max_workspace_size`` vs ``set_memory_pool_limit(WORKSPACE)``;
``platform_has_fast_fp16/int8`` (gone in 10: assumed); ``build_serialized_network`` in both.
"""

import os

import numpy as np

from edge import metadata as md
from edge.backends.base import BackendError
from edge.files import atomic_file
from edge.preprocess import prepare_faces
from jetson.trt_runtime import cuda_error, import_cuda, version_major

PRECISIONS = ("fp32", "fp16", "int8")


def _say(log, message):
    if log is not None:
        log(message)


def trtexec_command(
    onnx_path,
    engine_path,
    precision,
    input_name,
    item_shape,
    max_batch,
    opt_batch,
    workspace_mb,
    trt_version,
    calib_cache=None,
    fp16_fallback=True,
):
    """The trtexec command line building the same engine (for logs and manual builds).

    ``item_shape``: the input's dimensions after the batch (C, H, W for the classifier's NCHW faces;
    H, W, C for the detector's NHWC frames)."""

    def shape(n):
        return "{}:{}".format(input_name, "x".join(str(d) for d in (n,) + tuple(item_shape)))

    args = ["trtexec", "--onnx=" + onnx_path, "--saveEngine=" + engine_path]
    major = version_major(trt_version)
    if major < 10:
        args.append("--explicitBatch")
    args += [
        "--minShapes=" + shape(1),
        "--optShapes=" + shape(min(opt_batch, max_batch)),
        "--maxShapes=" + shape(max_batch),
    ]
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


def calibration_batches(faces, meta, opt_batch):
    """Real faces -> float32 NCHW batches of exactly ``opt_batch`` faces (the rest dropped)."""
    x = prepare_faces(faces, md.with_layout(meta, "NCHW"))
    n = (len(x) // opt_batch) * opt_batch
    if n == 0:
        raise BackendError("INT8 calibration needs at least {} faces, got {}".format(opt_batch, len(x)))
    return [x[i : i + opt_batch] for i in range(0, n, opt_batch)]


def _make_calibrator(trt, batches, cache_path):
    """An IInt8EntropyCalibrator2 feeding ``batches`` (float32 NCHW arrays of the OPT batch size)."""
    cuda = import_cuda()
    import pycuda.autoinit  # noqa: F401  (creates the CUDA context)

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


class TensorRTBuilder(object):
    """Builds engines with the installed TensorRT (``trt``: the module from ``import_tensorrt``)."""

    def __init__(self, trt):
        self.trt = trt  # checked by import_tensorrt; the methods import it by name so mypy sees TensorRT's API
        import tensorrt

        self.logger = tensorrt.Logger(tensorrt.Logger.WARNING)
        self._builder = None

    @property
    def builder(self):
        if self._builder is None:
            import tensorrt

            try:
                self._builder = tensorrt.Builder(self.logger)
            except Exception as exc:  # no CUDA device for this user, out of memory, ...
                raise cuda_error("creating the TensorRT builder", exc) from exc
            if self._builder is None:
                raise BackendError("TensorRT could not create a builder (is the GPU usable by this user?)")
        return self._builder

    def _fast(self, what):
        # platform_has_fast_fp16/int8 are deprecated in TensorRT 10 (assumed True there when gone).
        return bool(getattr(self.builder, "platform_has_fast_" + what, True))

    def effective_precision(self, precision, log=None):
        """The precision the GPU supports well: int8 -> fp16 -> fp32 as needed (logged)."""
        if precision not in PRECISIONS:
            raise BackendError("precision must be one of {}, got {!r}".format(", ".join(PRECISIONS), precision))
        if precision == "int8" and not self._fast("int8"):
            _say(log, "this GPU has no fast INT8 (e.g. the Jetson Nano's Maxwell GPU): building fp16 instead")
            precision = "fp16"
        if precision == "fp16" and not self._fast("fp16"):
            _say(log, "this GPU has no fast FP16: building fp32 instead")
            precision = "fp32"
        return precision

    def trtexec_command(
        self,
        onnx_path,
        engine_path,
        precision,
        input_name,
        item_shape,
        max_batch,
        opt_batch,
        workspace_mb,
        calib_cache=None,
    ):
        return trtexec_command(
            onnx_path,
            engine_path,
            precision,
            input_name,
            item_shape,
            max_batch,
            opt_batch,
            workspace_mb,
            self.trt.__version__,
            calib_cache,
        )

    def _network(self):
        import tensorrt as trt

        builder = self.builder  # type: trt.Builder
        if version_major(trt.__version__) >= 10:
            return builder.create_network(0)  # explicit batch is the only mode
        return builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))

    def _parse(self, onnx_path, meta):
        import tensorrt as trt

        network = self._network()
        parser = trt.OnnxParser(network, self.logger)
        with open(onnx_path, "rb") as handle:
            parsed = parser.parse(handle.read())
        if not parsed:
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError("{}: TensorRT {}'s ONNX parser failed: {}".format(onnx_path, trt.__version__, errors))
        if network.num_inputs != 1 or network.num_outputs < 1:
            raise BackendError(
                "{}: expected one input and at least one output, found {} and {}".format(
                    onnx_path, network.num_inputs, network.num_outputs
                )
            )
        inp = network.get_input(0)
        want = (-1,) + tuple(md.input_shape(meta)[1:])
        if tuple(inp.shape) != want:
            raise BackendError(
                "{}: input '{}' has shape {} but the metadata says {} ({}, dynamic batch)".format(
                    onnx_path, inp.name, tuple(inp.shape), want, meta["input"]["layout"]
                )
            )
        outputs = [network.get_output(i).name for i in range(network.num_outputs)]
        # keep the parser alive as long as the network (it owns the weights in TensorRT 8)
        return network, parser, inp.name, outputs

    def build(
        self,
        onnx_path,
        engine_path,
        meta,
        precision,
        max_batch,
        opt_batch,
        workspace_mb,
        calibration_faces=None,
        calib_cache=None,
        log=None,
    ):
        """Build and write an engine (atomically); returns (precision used, input name, output names)."""
        import tensorrt as trt

        builder = self.builder  # type: trt.Builder
        network, parser, input_name, output_names = self._parse(onnx_path, meta)
        config = builder.create_builder_config()
        size = int(workspace_mb) << 20
        if version_major(trt.__version__) >= 10:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, size)
        else:
            config.max_workspace_size = size  # type: ignore[attr-defined]  # TensorRT 8.x (gone in 10)
        item = tuple(md.input_shape(meta)[1:])
        opt = max(1, min(opt_batch, max_batch))
        profile = builder.create_optimization_profile()
        # tuples convert to Dims (pybind11), in 8.x and 10.x alike
        profile.set_shape(input_name, (1,) + item, (opt,) + item, (max_batch,) + item)  # type: ignore[arg-type]
        config.add_optimization_profile(profile)
        if precision in ("fp16", "int8") and self._fast("fp16"):
            config.set_flag(trt.BuilderFlag.FP16)
        calibrator = None
        if precision == "int8":
            if calibration_faces is None:
                raise BackendError("INT8 needs real calibration faces (uint8 [N,48,48]); none were given")
            config.set_flag(trt.BuilderFlag.INT8)
            calibrator = _make_calibrator(trt, calibration_batches(calibration_faces, meta, opt), calib_cache)
            config.int8_calibrator = calibrator
            config.set_calibration_profile(profile)  # calibration runs at the profile's OPT shape
        _say(
            log,
            "building a {} engine with TensorRT {} (batch 1..{}, opt {}); this takes minutes on a Jetson".format(
                precision, trt.__version__, max_batch, opt
            ),
        )
        try:
            serialized = builder.build_serialized_network(network, config)
        except Exception as exc:  # CUDA out of memory and friends surface here
            raise cuda_error("building the engine", exc) from exc
        if serialized is None:
            raise BackendError(
                "TensorRT could not build the engine from {} (see the TensorRT log above)".format(onnx_path)
            )
        with atomic_file(engine_path, binary=True) as handle:
            handle.write(serialized)
        del parser, calibrator
        return precision, input_name, output_names
