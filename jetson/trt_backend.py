"""TensorRT backend for the Jetson: runs a ``.engine`` built by ``jetson.engine`` (this GPU, this TensorRT).

Device code: Python 3.6 syntax; only the standard library and numpy at import. ``tensorrt`` and
``pycuda`` are imported inside functions (:func:`import_tensorrt`, :func:`import_cuda`); what is
missing, unsupported or failing in CUDA becomes a BackendError that says what to do.

TensorRT 8.x (JetPack 4.6 ships 8.2.1) and 10.x (JetPack 6) are both handled (``SUPPORTED_MAJORS``,
the one supported-version set of the project): the engine's I/O is read by
``jetson.engine_plan.plan_engine`` (binding API in 8, tensor API in 10); inference runs with
``context.set_binding_shape`` + ``execute_async_v2`` (8) or ``set_input_shape`` +
``set_tensor_address`` + ``execute_async_v3`` (10).

The engine has one input ``[N, ...]`` float32 (dynamic N, optimisation profile 1..max; NCHW faces
for the classifier, NHWC frames for the face detector, as the model's metadata says) and one or more
outputs ``[N, ...]`` (the classifier's probabilities; the detector's boxes and scores). Pinned host
buffers and device buffers are allocated once for the profile's maximum batch; larger batches run
in chunks.

:func:`device_info` is the GPU readiness check (``pycuda.driver.init()``, the device's name, compute
capability and the CUDA driver version): the same call the backend makes, so a user outside the
``video`` group or a pycuda built against another CUDA fails here with the project's message
instead of a traceback.
"""

import logging
import os

import numpy as np

from edge import metadata as md
from edge.backends.base import Backend, BackendError
from jetson.engine_info import read_engine_info, runtime_key, runtime_staleness
from jetson.trt_runtime import (  # noqa: F401
    DEFAULT_MAX_BATCH,
    DEFAULT_PRECISION,
    NOT_INSTALLED,
    SUPPORTED_MAJORS,
    DeviceInfo,
    cuda_error,
    device_info,
    gpu_ready,
    import_cuda,
    import_tensorrt,
    version_major,
)

from .engine_plan import (  # noqa: F401  # noqa: F401
    EnginePlan,
    TensorSpec,
    batch_chunks,
    buffer_nbytes,
    check_batch,
    padded_size,
    plan_engine,
    uses_tensor_api,
)

log = logging.getLogger(__name__)


class TensorRTBackend(Backend):
    """A TensorRT engine on CUDA device ``device``; ``run(batch float32) -> [outputs]`` (``infer``: the first).

    One CUDA stream and one set of buffers: calls must not overlap (the agent's loop is single
    threaded); any thread may call, the device's primary context is pushed around each call.
    """

    name = "tensorrt"

    def __init__(self, path, meta, device=0, warmup=True, check_sidecar=True):
        Backend.__init__(self, path, meta)
        import_tensorrt()  # a real, supported TensorRT, or BackendError
        import tensorrt as trt

        cuda = import_cuda()
        self._cuda = cuda
        self.trt_version = str(trt.__version__)
        self._cuda_ctx = None
        self._closed = False
        here = device_info(device)  # cuInit + device query: BackendError with the hints when CUDA is unusable
        info = None
        if check_sidecar:
            info = read_engine_info(path)
            if info is None:
                log.warning(
                    "%s: no engine sidecar (%s); cannot tell which TensorRT/GPU built it", path, md.sidecar_path(path)
                )
            else:
                reason = runtime_staleness(info, runtime_key(self.trt_version, here))
                if reason:
                    raise BackendError("{}: {}: {}".format(path, reason, _rebuild_hint(path, info)))
        # The device's primary context (the one TensorRT's CUDA runtime uses), made current around
        # every call, so inference works from any thread.
        try:
            self._cuda_ctx = cuda.Device(device).retain_primary_context()
        except Exception as exc:
            raise cuda_error("creating the CUDA context on device {}".format(device), exc) from exc
        self._cuda_ctx.push()
        try:
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._logger)
            with open(path, "rb") as handle:
                data = handle.read()
            self.engine = self._runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise BackendError(
                    "{}: TensorRT {} cannot deserialize this engine (built by another TensorRT "
                    "version or for another GPU, or a truncated file; see the TensorRT log "
                    "above): {}".format(path, self.trt_version, _rebuild_hint(path, info))
                )
            order = (meta.get("detector") or {}).get("output_names")
            self.plan = plan_engine(
                self.engine,
                uses_tensor_api(self.trt_version),
                lambda mode: mode == trt.TensorIOMode.INPUT,
                trt.nptype,
                where=path,
                output_order=order,
            )
            want = tuple(md.input_shape(meta)[1:])
            if want != self.plan.item_input_shape:
                raise BackendError(
                    "{}: the engine takes [N, {}] but its metadata says {} {} (wrong sidecar?)".format(
                        path,
                        ", ".join(str(d) for d in self.plan.item_input_shape),
                        meta["input"]["layout"],
                        md.input_shape(meta)[1:],
                    )
                )
            self.context = self.engine.create_execution_context()
            if self.context is None:
                raise BackendError("{}: cannot create a TensorRT execution context (out of GPU memory?)".format(path))
            self.stream = cuda.Stream()
            plan = self.plan
            self.host_in = cuda.pagelocked_empty(plan.input_shape(plan.max_batch), np.float32)
            self.host_outs = [
                cuda.pagelocked_empty(plan.output_shape(plan.max_batch, k), np.float32)
                for k in range(len(plan.outputs))
            ]
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
        except BaseException as exc:
            try:
                self._release()  # with the context current, as CUDA frees need it
            finally:
                self._cuda_ctx.pop()
                self._cuda_ctx.detach()
                self._cuda_ctx = None
            if isinstance(exc, Exception) and not isinstance(exc, (BackendError, OSError)):
                raise cuda_error("loading {} (buffers, context, stream)".format(path), exc) from exc
            raise
        self._cuda_ctx.pop()
        log.info(
            "%s: TensorRT %s engine, input %s %s, batch %d..%d",
            path,
            self.trt_version,
            plan.input.name,
            plan.item_input_shape,
            plan.min_batch,
            plan.max_batch,
        )
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
            got = tuple(self.context.get_tensor_shape(plan.output.name))  # type: ignore  # Dims iterates (pybind)
        else:
            ok = self.context.set_binding_shape(plan.input.index, shape)  # type: ignore[attr-defined]  # TensorRT 8
            got = tuple(self.context.get_binding_shape(plan.output.index))  # type: ignore[attr-defined]  # TensorRT 8
        if ok is False or got != plan.output_shape(n, 0):
            raise BackendError(
                "{}: TensorRT refused input shape {} (output {}; profile batch {}..{})".format(
                    self.path, shape, got, plan.min_batch, plan.max_batch
                )
            )
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
            ok = self.context.execute_async_v2(self.bindings, self.stream.handle)  # type: ignore[attr-defined]  # TRT 8
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
        outs = [
            np.empty(self.plan.output_shape(len(batch), k), dtype=np.float32) for k in range(len(self.plan.outputs))
        ]
        if len(batch) == 0:
            return outs
        try:
            ctx.push()
            try:
                for start, stop in batch_chunks(len(batch), self.plan.max_batch):
                    for out, part in zip(outs, self._run_chunk(batch[start:stop])):
                        out[start:stop] = part
            finally:
                ctx.pop()
        except BackendError:
            raise
        except Exception as exc:  # a CUDA error (e.g. the GPU was reset, launch failure)
            raise cuda_error("inference on {}".format(self.path), exc) from exc
        return outs

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


def _rebuild_hint(path, info):
    onnx = ((info or {}).get("engine") or {}).get("onnx") or "model.onnx"
    return (
        "rebuild it here: `python3 -m jetson --build-engine` (or `python3 -m jetson.engine {} --precision "
        "fp16`); engines are specific to the TensorRT version and the GPU"
    ).format(os.path.join(os.path.dirname(path), onnx))


def tensorrt_available():
    """True when TensorRT and pycuda are really installed here (not type stubs); see :func:`gpu_ready`."""
    return TensorRTBackend.available()
