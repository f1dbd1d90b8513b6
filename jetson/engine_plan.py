"""What an engine's inputs and outputs look like, read once from the engine object (no CUDA involved).

Device code (Python 3.6, numpy only). TensorRT 8.x exposes bindings (``num_bindings``,
``binding_is_input``, ``get_binding_shape``, ``get_profile_shape(0, index)``); TensorRT 10 exposes
I/O tensors (``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``,
``get_tensor_profile_shape(name, 0)``). :func:`plan_engine` reads either into one
:class:`EnginePlan`; the batch helpers size buffers and chunk batches. Tested with fake engines on
hosts without a GPU.
"""

import collections

import numpy as np

from edge.backends.base import BackendError

# One engine input/output: binding index (TensorRT 8; the position among the I/O tensors in 10),
# name, shape as the engine declares it (-1 = dynamic) and numpy dtype.
TensorSpec = collections.namedtuple("TensorSpec", "index name shape dtype")


class EnginePlan(
    collections.namedtuple("EnginePlan", "tensor_api input outputs min_batch opt_batch max_batch num_bindings")
):
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
            spec = TensorSpec(
                i, engine.get_binding_name(i), _dims(engine.get_binding_shape(i)), nptype(engine.get_binding_dtype(i))
            )
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
        raise BackendError(
            "{}: expected one input and at least one output, found {} and {} ({})".format(
                where, len(inputs), len(outputs), ", ".join(s.name for s in inputs + outputs)
            )
        )
    if output_order:
        by_name = dict((s.name, s) for s in outputs)
        if sorted(by_name) != sorted(output_order):
            raise BackendError(
                "{}: engine outputs {} differ from the model's {}".format(
                    where, ", ".join(sorted(by_name)), ", ".join(output_order)
                )
            )
        outputs = [by_name[name] for name in output_order]
    inp = inputs[0]
    for spec in [inp] + outputs:
        if np.dtype(spec.dtype) != np.float32:
            raise BackendError(
                "{}: tensor '{}' is {}, expected float32 (build the engine with jetson.engine)".format(
                    where, spec.name, np.dtype(spec.dtype)
                )
            )
    if len(inp.shape) != 4 or any(d < 1 for d in inp.shape[1:]):
        raise BackendError(
            "{}: input '{}' has shape {}, expected 4 dimensions with a dynamic or fixed N".format(
                where, inp.name, inp.shape
            )
        )
    for out in outputs:
        if len(out.shape) < 2 or any(d < 1 for d in out.shape[1:]):
            raise BackendError(
                "{}: output '{}' has shape {}, expected [N, ...] with fixed item dimensions".format(
                    where, out.name, out.shape
                )
            )
    if inp.shape[0] == -1:
        lo, opt, hi = _profile(engine, tensor_api, inp)
        if lo[1:] != inp.shape[1:] or hi[1:] != inp.shape[1:]:
            raise BackendError(
                "{}: optimisation profile {}..{} does not match the input shape {}".format(where, lo, hi, inp.shape)
            )
        min_batch, opt_batch, max_batch = lo[0], opt[0], hi[0]
    else:
        min_batch = opt_batch = max_batch = inp.shape[0]
    if not 1 <= min_batch <= max_batch:
        raise BackendError("{}: bad batch range {}..{} in the optimisation profile".format(where, min_batch, max_batch))
    num_bindings = engine.num_io_tensors if tensor_api else engine.num_bindings
    return EnginePlan(
        bool(tensor_api), inp, list(outputs), int(min_batch), int(opt_batch), int(max_batch), int(num_bindings)
    )


def buffer_nbytes(plan, batch=None):
    """(input bytes, bytes of all outputs) of float32 buffers for ``batch`` items (default: the max batch)."""
    batch = plan.max_batch if batch is None else batch
    return (
        int(np.prod(plan.input_shape(batch))) * 4,
        sum(int(np.prod(plan.output_shape(batch, k))) * 4 for k in range(len(plan.outputs))),
    )


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
        raise BackendError(
            "{}: input batch has shape {}, the engine takes [N, {}]".format(
                where, tuple(batch.shape), ", ".join(str(d) for d in plan.item_input_shape)
            )
        )
    return batch
