"""TensorRT backend for the Jetson: runs a ``.engine`` built by ``convert.tensorrt_build``.

Device code: Python 3.6 syntax; only the standard library and numpy at import. ``tensorrt`` and
``pycuda`` are imported inside :class:`TensorRTBackend` (a BackendError names what is missing).

TensorRT 8.x (JetPack 4.6 ships 8.2.1) and 10.x (JetPack 6) are both handled:

* 8.x, binding API: ``engine.num_bindings``, ``binding_is_input``, ``get_binding_shape``,
  ``get_profile_shape(0, index)``, ``context.set_binding_shape`` + ``execute_async_v2``;
* 10.x, tensor API: ``engine.num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``,
  ``get_tensor_profile_shape(name, 0)``, ``context.set_input_shape`` + ``set_tensor_address`` +
  ``execute_async_v3``.

The engine has one input ``[N, ...]`` float32 (dynamic N, optimisation profile 1..max; NCHW faces
for the classifier, NHWC frames for the face detector, as the model's metadata says) and one or more
outputs ``[N, ...]`` (the classifier's probabilities; the detector's boxes and scores). Pinned host
buffers and device buffers are allocated once for the profile's maximum batch; larger batches run
in chunks. The pure helpers (:func:`plan_engine`,
:func:`batch_chunks`, :func:`buffer_nbytes`, :func:`engine_mismatch`) take the engine object and
no CUDA, so they are tested with a fake engine on hosts without a GPU.

``ensure_engine`` returns a current engine for an ONNX model, building it on this GPU when it is
missing or stale (the ONNX changed, another TensorRT version or GPU).
"""

import collections
import logging
import os

import numpy as np

from edge import metadata as md
from edge.backends.base import Backend, BackendError, module_installed

log = logging.getLogger("fer_edge.jetson.trt")

DEFAULT_PRECISION = "fp16"
DEFAULT_MAX_BATCH = 8
ENGINE_DIR_ENV = "FER_EDGE_ENGINE_DIR"
STATE_DIR = "/var/lib/fer-edge"

NOT_INSTALLED = ("TensorRT/pycuda not installed: the TensorRT backend runs on a Jetson (JetPack 4.6: "
                 "TensorRT 8.2 is part of JetPack; pycuda: `pip3 install pycuda` with "
                 "PATH=/usr/local/cuda/bin:$PATH) or on a host with an NVIDIA GPU")

# One engine input/output: binding index (TensorRT 8; the position among the I/O tensors in 10),
# name, shape as the engine declares it (-1 = dynamic) and numpy dtype.
TensorSpec = collections.namedtuple("TensorSpec", "index name shape dtype")


class EnginePlan(collections.namedtuple(
        "EnginePlan", "tensor_api input outputs min_batch opt_batch max_batch num_bindings")):
    """What the backend needs to know about an engine, read once from it (no CUDA involved).

    ``input``: TensorSpec; ``outputs``: TensorSpecs in the model's output order;
    ``min/opt/max_batch``: the optimisation profile 0 batch range; ``num_bindings``: the size of
    the bindings list for ``execute_async_v2`` (TensorRT 8).
    """

    @property
    def output(self):
        """The first output (a classifier's probabilities)."""
        return self.outputs[0]

    @property
    def item_input_shape(self):
        return tuple(self.input.shape[1:])

    @property
    def item_output_shape(self):
        return tuple(self.output.shape[1:])

    def input_shape(self, batch):
        return (int(batch),) + self.item_input_shape

    def output_shape(self, batch, k=0):
        return (int(batch),) + tuple(self.outputs[k].shape[1:])


# ---------------------------------------------------------------- pure helpers (fake-engine testable)


def uses_tensor_api(trt_version):
    """TensorRT 10 removed the binding API; 8.x uses it (8.5/8.6 have both; bindings still work)."""
    return int(str(trt_version).split(".")[0]) >= 10


def _dims(shape):
    return tuple(int(d) for d in shape)


def _io_tensors(engine, tensor_api, is_input_mode, nptype):
    """([inputs], [outputs]) as TensorSpec, in engine order."""
    inputs = []  # type: list
    outputs = []  # type: list
    if tensor_api:
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            spec = TensorSpec(i, name, _dims(engine.get_tensor_shape(name)), nptype(engine.get_tensor_dtype(name)))
            (inputs if is_input_mode(engine.get_tensor_mode(name)) else outputs).append(spec)
    else:
        for i in range(engine.num_bindings):
            spec = TensorSpec(i, engine.get_binding_name(i), _dims(engine.get_binding_shape(i)),
                              nptype(engine.get_binding_dtype(i)))
            (inputs if engine.binding_is_input(i) else outputs).append(spec)
    return inputs, outputs


def _profile(engine, tensor_api, spec):
    """(min, opt, max) input shapes of optimisation profile 0."""
    if tensor_api:
        shapes = engine.get_tensor_profile_shape(spec.name, 0)
    else:
        shapes = engine.get_profile_shape(0, spec.index)
    return tuple(_dims(s) for s in shapes)


def plan_engine(engine, tensor_api, is_input_mode=None, nptype=np.dtype, where="engine", output_order=None):
    """Read and check an engine's I/O: one float32 input [N, a, b, c], float32 outputs [N, ...].

    ``is_input_mode``: for the tensor API, a predicate on ``engine.get_tensor_mode(name)``
    (``lambda m: m == trt.TensorIOMode.INPUT``); ``nptype``: TensorRT DataType -> numpy dtype
    (``trt.nptype``); ``output_order``: output tensor names in the model's order (the detector's
    metadata ``detector.output_names``), else the engine's order. Raises BackendError naming
    ``where`` when the engine does not fit.
    """
    if tensor_api and is_input_mode is None:
        raise ValueError("is_input_mode is required with the tensor API")
    inputs, outputs = _io_tensors(engine, tensor_api, is_input_mode, nptype)
    if len(inputs) != 1 or not outputs:
        raise BackendError("{}: expected one input and at least one output, found {} and {} ({})".format(
            where, len(inputs), len(outputs), ", ".join(s.name for s in inputs + outputs)))
    if output_order:
        by_name = dict((s.name, s) for s in outputs)
        if sorted(by_name) != sorted(output_order):
            raise BackendError("{}: engine outputs {} differ from the model's {}".format(
                where, ", ".join(sorted(by_name)), ", ".join(output_order)))
        outputs = [by_name[name] for name in output_order]
    inp = inputs[0]
    for spec in [inp] + outputs:
        if np.dtype(spec.dtype) != np.float32:
            raise BackendError("{}: tensor '{}' is {}, expected float32 (build the engine with "
                               "convert.tensorrt_build)".format(where, spec.name, np.dtype(spec.dtype)))
    if len(inp.shape) != 4 or any(d < 1 for d in inp.shape[1:]):
        raise BackendError("{}: input '{}' has shape {}, expected 4 dimensions with a dynamic or fixed N".format(
            where, inp.name, inp.shape))
    for out in outputs:
        if len(out.shape) < 2 or any(d < 1 for d in out.shape[1:]):
            raise BackendError("{}: output '{}' has shape {}, expected [N, ...] with fixed item dimensions".format(
                where, out.name, out.shape))
    if inp.shape[0] == -1:
        lo, opt, hi = _profile(engine, tensor_api, inp)
        if lo[1:] != inp.shape[1:] or hi[1:] != inp.shape[1:]:
            raise BackendError("{}: optimisation profile {}..{} does not match the input shape {}".format(
                where, lo, hi, inp.shape))
        min_batch, opt_batch, max_batch = lo[0], opt[0], hi[0]
    else:
        min_batch = opt_batch = max_batch = inp.shape[0]
    if not 1 <= min_batch <= max_batch:
        raise BackendError("{}: bad batch range {}..{} in the optimisation profile".format(where, min_batch, max_batch))
    num_bindings = engine.num_io_tensors if tensor_api else engine.num_bindings
    return EnginePlan(bool(tensor_api), inp, list(outputs), int(min_batch), int(opt_batch), int(max_batch),
                      int(num_bindings))


def buffer_nbytes(plan, batch=None):
    """(input bytes, bytes of all outputs) of float32 buffers for ``batch`` items (default: the max batch)."""
    batch = plan.max_batch if batch is None else batch
    return (int(np.prod(plan.input_shape(batch))) * 4,
            sum(int(np.prod(plan.output_shape(batch, k))) * 4 for k in range(len(plan.outputs))))


def batch_chunks(n, max_batch, min_batch=1):
    """[(start, stop), ...] covering ``n`` faces in chunks of at most ``max_batch``.

    Chunks smaller than ``min_batch`` (only when an engine's profile starts above 1) are
    padded by the caller; :func:`padded_size` says to how much.
    """
    if max_batch < 1:
        raise ValueError("max_batch must be >= 1, got {}".format(max_batch))
    return [(start, min(n, start + max_batch)) for start in range(0, int(n), int(max_batch))]


def padded_size(count, min_batch):
    """The batch size to run for ``count`` faces given the profile's minimum batch."""
    return max(int(count), int(min_batch))


def check_batch(batch, plan, where="engine"):
    """``batch`` as a C-contiguous float32 array [N, ...] of the engine's input; BackendError on a wrong shape."""
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    if batch.ndim != 4 or tuple(batch.shape[1:]) != plan.item_input_shape:
        raise BackendError("{}: input batch has shape {}, the engine takes [N, {}]".format(
            where, tuple(batch.shape), ", ".join(str(d) for d in plan.item_input_shape)))
    return batch


def engine_mismatch(info, trt_version, gpu):
    """Why an engine sidecar (``convert.tensorrt_build.read_engine_info``) does not fit here, or None."""
    if info is None:
        return None
    engine = info.get("engine") or {}
    built_version, built_gpu = engine.get("tensorrt_version"), engine.get("gpu")
    reasons = []
    if built_version is not None and str(built_version) != str(trt_version):
        reasons.append("built with TensorRT {}, this is TensorRT {}".format(built_version, trt_version))
    if built_gpu is not None and gpu is not None and str(built_gpu) != str(gpu):
        reasons.append("built for GPU {!r}, this is {!r}".format(built_gpu, gpu))
    return "; ".join(reasons) or None


def _rebuild_hint(path, info):
    onnx = (info or {}).get("engine", {}).get("onnx") or "model.onnx"
    return ("rebuild it here: `python3 -m jetson --build-engine` (or `python3 -m convert.tensorrt_build {} "
            "--precision fp16 --max-batch 8`); engines are specific to the TensorRT version and the GPU").format(
        os.path.join(os.path.dirname(path), onnx))


# ---------------------------------------------------------------- the backend (TensorRT + pycuda)


def _import_runtime():
    """(tensorrt, pycuda.driver), or BackendError saying what is missing and where this runs."""
    if not module_installed("tensorrt"):
        raise BackendError(NOT_INSTALLED + " (no usable Python module 'tensorrt')")
    import tensorrt as trt
    if not hasattr(trt, "Runtime"):
        raise BackendError(NOT_INSTALLED + " (the 'tensorrt' module has no Runtime: type stubs only?)")
    major = int(str(trt.__version__).split(".")[0])
    if major not in (8, 10):
        raise BackendError("TensorRT {} is not supported (supported: 8.x as in JetPack 4.6/5, 10.x as in "
                           "JetPack 6)".format(trt.__version__))
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise BackendError("{} (pycuda: {})".format(NOT_INSTALLED, exc))
    return trt, cuda


class TensorRTBackend(Backend):
    """A TensorRT engine on CUDA device ``device``; ``run(batch float32) -> [outputs]`` (``infer``: the first).

    One CUDA stream and one set of buffers: calls must not overlap (the agent's loop is single
    threaded); any thread may call, the device's primary context is pushed around each call.
    """

    name = "tensorrt"

    def __init__(self, path, meta, device=0, warmup=True, check_sidecar=True):
        Backend.__init__(self, path, meta)
        trt, cuda = _import_runtime()
        self._cuda = cuda
        self.trt_version = str(trt.__version__)
        self._cuda_ctx = None
        self._closed = False
        info = None
        if check_sidecar:
            from convert.tensorrt_build import gpu_name, read_engine_info
            info = read_engine_info(path)
            if info is None:
                log.warning("%s: no engine sidecar (%s); cannot tell which TensorRT/GPU built it", path,
                            md.sidecar_path(path))
            else:
                reason = engine_mismatch(info, self.trt_version, gpu_name(device))
                if reason:
                    raise BackendError("{}: {}: {}".format(path, reason, _rebuild_hint(path, info)))
        cuda.init()
        # The device's primary context (the one TensorRT's CUDA runtime uses), made current around
        # every call, so inference works from any thread.
        self._cuda_ctx = cuda.Device(device).retain_primary_context()
        self._cuda_ctx.push()
        try:
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._logger)
            with open(path, "rb") as handle:
                data = handle.read()
            self.engine = self._runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise BackendError("{}: TensorRT {} cannot deserialize this engine (built by another TensorRT "
                                   "version or for another GPU, or a truncated file; see the TensorRT log "
                                   "above): {}".format(path, self.trt_version, _rebuild_hint(path, info)))
            order = (meta.get("detector") or {}).get("output_names")
            self.plan = plan_engine(self.engine, uses_tensor_api(self.trt_version),
                                    lambda mode: mode == trt.TensorIOMode.INPUT, trt.nptype, where=path,
                                    output_order=order)
            want = tuple(md.input_shape(meta)[1:])
            if want != self.plan.item_input_shape:
                raise BackendError("{}: the engine takes [N, {}] but its metadata says {} {} (wrong sidecar?)".format(
                    path, ", ".join(str(d) for d in self.plan.item_input_shape), meta["input"]["layout"],
                    md.input_shape(meta)[1:]))
            self.context = self.engine.create_execution_context()
            if self.context is None:
                raise BackendError("{}: cannot create a TensorRT execution context (out of GPU memory?)".format(path))
            self.stream = cuda.Stream()
            plan = self.plan
            self.host_in = cuda.pagelocked_empty(plan.input_shape(plan.max_batch), np.float32)
            self.host_outs = [cuda.pagelocked_empty(plan.output_shape(plan.max_batch, k), np.float32)
                              for k in range(len(plan.outputs))]
            self.dev_in = cuda.mem_alloc(self.host_in.nbytes)
            self.dev_outs = [cuda.mem_alloc(h.nbytes) for h in self.host_outs]
            if plan.tensor_api:
                self.context.set_tensor_address(plan.input.name, int(self.dev_in))
                for spec, buf in zip(plan.outputs, self.dev_outs):
                    self.context.set_tensor_address(spec.name, int(buf))
            self.bindings = [0] * plan.num_bindings
            self.bindings[plan.input.index] = int(self.dev_in)
            for spec, buf in zip(plan.outputs, self.dev_outs):
                self.bindings[spec.index] = int(buf)
            self._shape = None
        except BaseException:
            try:
                self._release()  # with the context current, as CUDA frees need it
            finally:
                self._cuda_ctx.pop()
                self._cuda_ctx.detach()
                self._cuda_ctx = None
            raise
        self._cuda_ctx.pop()
        log.info("%s: TensorRT %s engine, input %s %s, batch %d..%d", path, self.trt_version, plan.input.name,
                 plan.item_input_shape, plan.min_batch, plan.max_batch)
        if warmup:
            try:
                self.infer(np.zeros(plan.input_shape(1), dtype=np.float32))  # first call sets up the kernels
            except BaseException:
                self.close()
                raise

    def _set_batch(self, n):
        plan = self.plan
        if self._shape == n:
            return
        shape = plan.input_shape(n)
        if plan.tensor_api:
            ok = self.context.set_input_shape(plan.input.name, shape)
            got = tuple(self.context.get_tensor_shape(plan.output.name))
        else:
            ok = self.context.set_binding_shape(plan.input.index, shape)
            got = tuple(self.context.get_binding_shape(plan.output.index))
        if ok is False or got != plan.output_shape(n, 0):
            raise BackendError("{}: TensorRT refused input shape {} (output {}; profile batch {}..{})".format(
                self.path, shape, got, plan.min_batch, plan.max_batch))
        self._shape = n

    def _run_chunk(self, chunk):
        cuda, plan = self._cuda, self.plan
        m = len(chunk)
        n = padded_size(m, plan.min_batch)
        self.host_in[:m] = chunk
        if n > m:
            self.host_in[m:n] = 0.0
        self._set_batch(n)
        cuda.memcpy_htod_async(self.dev_in, self.host_in[:n], self.stream)
        if plan.tensor_api:
            ok = self.context.execute_async_v3(self.stream.handle)
        else:
            ok = self.context.execute_async_v2(self.bindings, self.stream.handle)
        for host, dev in zip(self.host_outs, self.dev_outs):
            cuda.memcpy_dtoh_async(host[:n], dev, self.stream)
        self.stream.synchronize()
        if not ok:
            raise BackendError("{}: TensorRT inference failed (batch {})".format(self.path, n))
        return [host[:m].copy() for host in self.host_outs]

    def run(self, batch):
        ctx = self._cuda_ctx
        if self._closed or ctx is None:
            raise BackendError("{}: backend closed".format(self.path))
        batch = check_batch(batch, self.plan, self.path)
        outs = [np.empty(self.plan.output_shape(len(batch), k), dtype=np.float32) for k in range(len(self.plan.outputs))]
        if len(batch) == 0:
            return outs
        ctx.push()
        try:
            for start, stop in batch_chunks(len(batch), self.plan.max_batch):
                for out, part in zip(outs, self._run_chunk(batch[start:stop])):
                    out[start:stop] = part
        finally:
            ctx.pop()
        return outs

    def infer(self, batch):
        return self.run(batch)[0]

    def _release(self):
        buf = getattr(self, "dev_in", None)
        if buf is not None:
            buf.free()
            self.dev_in = None
        for buf in getattr(self, "dev_outs", None) or []:
            buf.free()
        self.dev_outs = []
        for name in ("context", "engine", "_runtime", "stream", "host_in", "host_outs"):
            if hasattr(self, name):
                setattr(self, name, None)

    def close(self):
        if self._closed or self._cuda_ctx is None:
            return
        self._closed = True
        self._cuda_ctx.push()
        try:
            self._release()
        finally:
            self._cuda_ctx.pop()
            self._cuda_ctx.detach()
            self._cuda_ctx = None


# ---------------------------------------------------------------- engines for an ONNX model


def tensorrt_available():
    """True when TensorRT and pycuda are really installed here (not type stubs)."""
    return TensorRTBackend.available()


def default_engine_dir(onnx_path):
    """$FER_EDGE_ENGINE_DIR, else /var/lib/fer-edge/engines when /var/lib/fer-edge is writable, else
    the ONNX's own folder (engines are per device, so they live in the service's state folder)."""
    env = os.environ.get(ENGINE_DIR_ENV)
    if env:
        return env
    if os.path.isdir(STATE_DIR) and os.access(STATE_DIR, os.W_OK):
        return os.path.join(STATE_DIR, "engines")
    return os.path.dirname(os.path.abspath(str(onnx_path)))


def ensure_engine(onnx_path, precision=DEFAULT_PRECISION, max_batch=DEFAULT_MAX_BATCH, engine_dir=None, log=print,
                  force=False, stem=None):
    """The path of a current TensorRT engine for ``onnx_path`` on this GPU, built when needed.

    Reuses the engine whose sidecar matches the ONNX sha256, the TensorRT version, the GPU, the
    precision and the max batch (``convert.tensorrt_build.build_or_reuse``); otherwise builds it
    (minutes on a Jetson Nano). Raises BackendError with the reason when that is impossible.
    """
    from convert.errors import ConversionError
    from convert.tensorrt_build import build_or_reuse
    onnx_path = str(onnx_path)
    if not os.path.isfile(onnx_path):
        raise BackendError("{}: ONNX model not found".format(onnx_path))
    engine_dir = engine_dir or default_engine_dir(onnx_path)
    try:
        os.makedirs(engine_dir, exist_ok=True)
    except OSError as exc:
        raise BackendError("cannot create the engine folder {} ({}); set {} or --engine-dir".format(
            engine_dir, exc, ENGINE_DIR_ENV))
    if not os.access(engine_dir, os.W_OK):
        raise BackendError("engine folder {} is not writable by this user; set {} or --engine-dir".format(
            engine_dir, ENGINE_DIR_ENV))
    try:
        return build_or_reuse(onnx_path, engine_dir, precision=precision, max_batch=int(max_batch), force=force,
                              log=log, stem=stem)
    except (ConversionError, md.MetadataError, OSError) as exc:
        raise BackendError("cannot get a TensorRT engine for {}: {}".format(onnx_path, exc))
