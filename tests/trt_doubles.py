"""Test doubles of NVIDIA's TensorRT and pycuda (which exist only where a GPU does), and the tiny model
they compute.

* ``FakeCuda``: ``pycuda.driver`` over numpy (device memory is a dict of bytearrays; it checks a
  context is current around every copy); ``fail_init`` makes ``init()`` raise like a user outside
  the ``video`` group does.
* ``fake_tensorrt``: a ``tensorrt`` module whose Runtime deserializes "fake engine" bytes into
  engines of TensorRT 8's binding API or 10's tensor API; they compute the tiny model
  (``reference_probs``) or, for detector engines, run ONNX Runtime on the real detector ONNX.
* ``FakeBuilder``: stands in for ``jetson.engine_build.TensorRTBuilder`` (NVIDIA's builder): it
  writes those fake engine bytes, or fails, and records its calls.

Everything else in the tests (the backend, jetson.engine's build-or-reuse, the check, back-off) is
the real code.
"""

import os
import types

import numpy as np

from edge import metadata as md


def tiny_weights(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.05, (48 * 48, 8)).astype(np.float32), rng.normal(0, 0.1, 8).astype(np.float32)


def reference_probs(x, seed=0):
    """What the tiny model computes on NCHW float32 0..255 input."""
    w, b = tiny_weights(seed)
    logits = (x.reshape(len(x), -1).astype(np.float64) / 127.5 - 1.0) @ w + b
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def tiny_meta():
    meta = md.with_layout(md.default_metadata(48, 48), "NCHW")
    meta["model"] = {"name": "tiny-jetson-test", "macs": 48 * 48 * 8, "parameters": 48 * 48 * 8 + 8}
    return meta


def write_tiny_onnx(path):
    """The tiny model as an ONNX with fer-edge metadata, written to ``path``."""
    import json

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w, b = tiny_weights()
    nodes = [
        helper.make_node("Mul", ["face", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "offset"], ["normalized"]),
        helper.make_node("Flatten", ["normalized"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    inits = [
        numpy_helper.from_array(np.array(1 / 127.5, np.float32), "scale"),
        numpy_helper.from_array(np.array(-1.0, np.float32), "offset"),
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(b, "B"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("face", TensorProto.FLOAT, ["N", 1, 48, 48])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="test_jetson")
    model.ir_version = 7  # what TensorRT 8.2's ONNX parser reads
    helper.set_model_props(model, {md.ONNX_METADATA_KEY: json.dumps(tiny_meta())})
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


class FakeCuda(types.ModuleType):
    """pycuda.driver over numpy: device memory is a dict of bytearrays; checks a context is current."""

    GPU = "Fake GPU"
    CAPABILITY = (5, 3)
    DRIVER = 10020  # CUDA 10.2, as on JetPack 4.6

    class Error(Exception):
        """pycuda.driver.Error"""

    def __init__(self, fail_init=None):
        types.ModuleType.__init__(self, "pycuda.driver")
        self.__file__ = "fake-pycuda"
        self.memory, self.next_address, self.depth = {}, 4096, 0
        self.fail_init = fail_init
        cuda = self

        class Context(object):
            def push(self):
                cuda.depth += 1

            def pop(self):
                assert cuda.depth > 0, "pop without push"
                cuda.depth -= 1

            def detach(self):
                cuda.detached = True

        class Device(object):
            def __init__(self, index):
                self.index = index

            def name(self):
                return cuda.GPU

            def compute_capability(self):
                return cuda.CAPABILITY

            def retain_primary_context(self):
                return Context()

        class Stream(object):
            handle = 77

            def synchronize(self):
                pass

        class Allocation(object):
            def __init__(self, address):
                self.address = address

            def __int__(self):
                return self.address

            def free(self):
                del cuda.memory[self.address]

        self.Device, self.Stream, self.Allocation = Device, Stream, Allocation

    def init(self):
        if self.fail_init:
            raise self.Error(self.fail_init)

    def get_driver_version(self):
        return self.DRIVER

    def pagelocked_empty(self, shape, dtype):
        return np.zeros(shape, dtype)

    def mem_alloc(self, nbytes):
        address = self.next_address
        self.next_address += nbytes + 256
        self.memory[address] = bytearray(nbytes)
        return self.Allocation(address)

    def memcpy_htod_async(self, dest, src, stream):
        assert self.depth > 0, "no CUDA context current"
        data = np.ascontiguousarray(src).tobytes()
        buf = self.memory[int(dest)]
        assert len(data) <= len(buf), "host->device copy larger than the buffer"
        buf[: len(data)] = data

    def memcpy_dtoh_async(self, dest, src, stream):
        assert self.depth > 0, "no CUDA context current"
        buf = self.memory[int(src)]
        assert dest.nbytes <= len(buf) and dest.flags["C_CONTIGUOUS"]
        dest[...] = np.frombuffer(bytes(buf[: dest.nbytes]), dtype=dest.dtype).reshape(dest.shape)

    def read(self, address, count):
        return np.frombuffer(bytes(self.memory[address][: count * 4]), dtype=np.float32)

    def write(self, address, array):
        data = np.ascontiguousarray(array, dtype=np.float32).tobytes()
        self.memory[address][: len(data)] = data


PROFILE = ((1, 1, 48, 48), (4, 1, 48, 48), (8, 1, 48, 48))
NAMES = ("face", "probabilities")
SHAPES = ((-1, 1, 48, 48), (-1, 8))


class FakeEngine8(object):
    """TensorRT 8.2's binding API (one dynamic-batch input, one output)."""

    num_bindings = 2

    def __init__(self, cuda, profile=PROFILE, dtypes=(np.float32, np.float32)):
        self.cuda, self.profile, self.dtypes, self.batches = cuda, profile, dtypes, []

    def get_binding_name(self, i):
        return NAMES[i]

    def get_binding_shape(self, i):
        return SHAPES[i]

    def get_binding_dtype(self, i):
        return self.dtypes[i]

    def binding_is_input(self, i):
        return i == 0

    def get_profile_shape(self, profile, i):
        assert profile == 0 and i == 0
        return self.profile

    def create_execution_context(self):
        return FakeContext8(self)

    def run(self, n, in_address, out_address):
        assert self.cuda.depth > 0
        x = self.cuda.read(in_address, n * 48 * 48).reshape(n, 1, 48, 48)
        self.cuda.write(out_address, reference_probs(x))
        self.batches.append(n)
        return True


class FakeContext8(object):
    def __init__(self, engine):
        self.engine, self.n = engine, None

    def set_binding_shape(self, i, shape):
        assert i == 0
        if not self.engine.profile[0][0] <= shape[0] <= self.engine.profile[2][0]:
            return False
        self.n = shape[0]
        return True

    def get_binding_shape(self, i):
        return (self.n, 1, 48, 48) if i == 0 else (self.n, 8)

    def execute_async_v2(self, bindings, stream_handle):
        assert len(bindings) == 2 and stream_handle == 77
        return self.engine.run(self.n, bindings[0], bindings[1])


class FakeEngine10(object):
    """TensorRT 10's tensor API."""

    num_io_tensors = 2

    def __init__(self, cuda, profile=PROFILE, dtypes=(np.float32, np.float32)):
        self.cuda, self.profile, self.dtypes, self.batches = cuda, profile, dtypes, []

    def get_tensor_name(self, i):
        return NAMES[i]

    def get_tensor_shape(self, name):
        return SHAPES[NAMES.index(name)]

    def get_tensor_dtype(self, name):
        return self.dtypes[NAMES.index(name)]

    def get_tensor_mode(self, name):
        return "IN" if name == "face" else "OUT"

    def get_tensor_profile_shape(self, name, profile):
        assert name == "face" and profile == 0
        return self.profile

    def create_execution_context(self):
        return FakeContext10(self)

    run = FakeEngine8.run


class FakeContext10(object):
    def __init__(self, engine):
        self.engine, self.n, self.addresses = engine, None, {}

    def set_input_shape(self, name, shape):
        assert name == "face"
        if not self.engine.profile[0][0] <= shape[0] <= self.engine.profile[2][0]:
            return False
        self.n = shape[0]
        return True

    def get_tensor_shape(self, name):
        return (self.n, 1, 48, 48) if name == "face" else (self.n, 8)

    def set_tensor_address(self, name, address):
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle):
        assert stream_handle == 77
        return self.engine.run(self.n, self.addresses["face"], self.addresses["probabilities"])


class FakeDetectorEngine(object):
    """A two-output NHWC engine (the face detector) for both APIs; it computes with ONNX Runtime on
    the shipped detector's ONNX, so the backend's buffers and output order are checked for real.
    Its outputs are listed in the reverse of the model's order (the metadata's output_names fix it)."""

    def __init__(self, cuda, tensor_api, onnx_path, size, max_batch=9):
        import onnxruntime as ort

        self.cuda, self.tensor_api, self.size, self.batches = cuda, tensor_api, size, []
        self.session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        self.names = ("image", "classificators", "regressors")
        self.item = {"image": (size, size, 3), "classificators": (896, 1), "regressors": (896, 16)}
        self.profile = tuple((n, size, size, 3) for n in (1, 4, max_batch))
        self.num_bindings = self.num_io_tensors = 3

    # TensorRT 8 binding API
    def get_binding_name(self, i):
        return self.names[i]

    def get_binding_shape(self, i):
        return (-1,) + self.item[self.names[i]]

    def get_binding_dtype(self, i):
        return np.float32

    def binding_is_input(self, i):
        return i == 0

    def get_profile_shape(self, profile, i):
        return self.profile

    # TensorRT 10 tensor API
    def get_tensor_name(self, i):
        return self.names[i]

    def get_tensor_shape(self, name):
        return (-1,) + self.item[name]

    def get_tensor_dtype(self, name):
        return np.float32

    def get_tensor_mode(self, name):
        return "IN" if name == "image" else "OUT"

    def get_tensor_profile_shape(self, name, profile):
        return self.profile

    def create_execution_context(self):
        return FakeDetectorContext(self)

    def run(self, n, addresses):
        assert self.cuda.depth > 0
        x = self.cuda.read(addresses["image"], n * self.size * self.size * 3).reshape(n, self.size, self.size, 3)
        regressors, classificators = self.session.run(None, {"image": x})
        self.cuda.write(addresses["regressors"], regressors)
        self.cuda.write(addresses["classificators"], classificators)
        self.batches.append(n)
        return True


class FakeDetectorContext(object):
    def __init__(self, engine):
        self.engine, self.n, self.addresses = engine, None, {}

    def _set(self, shape):
        if not self.engine.profile[0][0] <= shape[0] <= self.engine.profile[2][0]:
            return False
        self.n = shape[0]
        return True

    def set_binding_shape(self, i, shape):
        return self._set(shape)

    def set_input_shape(self, name, shape):
        return self._set(shape)

    def get_binding_shape(self, i):
        return (self.n,) + self.engine.item[self.engine.names[i]]

    def get_tensor_shape(self, name):
        return (self.n,) + self.engine.item[name]

    def set_tensor_address(self, name, address):
        self.addresses[name] = address
        return True

    def execute_async_v2(self, bindings, stream_handle):
        return self.engine.run(self.n, dict(zip(self.engine.names, bindings)))

    def execute_async_v3(self, stream_handle):
        return self.engine.run(self.n, self.addresses)


def fake_tensorrt(version, cuda, engines):
    trt = types.ModuleType("tensorrt")
    trt.__file__ = "fake-tensorrt"
    trt.__version__ = version

    class Logger(object):
        WARNING = 2

        def __init__(self, level):
            self.level = level

    class Runtime(object):
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            if data.startswith(b"fake detector "):
                onnx_path, size = data[len(b"fake detector ") :].decode().rsplit(" ", 1)
                engine = FakeDetectorEngine(cuda, version.startswith("10."), onnx_path, int(size))
                engines.append(engine)
                return engine
            if data != b"fake engine":
                return None
            engine = (FakeEngine10 if version.startswith("10.") else FakeEngine8)(cuda)
            engines.append(engine)
            return engine

    trt.Logger, trt.Runtime = Logger, Runtime
    trt.nptype = lambda t: t
    trt.TensorIOMode = types.SimpleNamespace(INPUT="IN", OUTPUT="OUT")
    return trt


def write_engine(folder, trt_version, gpu="Fake GPU", data=b"fake engine", capability="5.3", cuda_driver="10.2"):
    """A fake engine file with a sidecar as jetson.engine writes it (the runtime key given here)."""
    path = os.path.join(str(folder), "model.trt{}.fp16.fake-gpu.engine".format(trt_version))
    with open(path, "wb") as handle:
        handle.write(data)
    info = tiny_meta()
    info["engine"] = {
        "tensorrt_version": trt_version,
        "gpu": gpu,
        "precision": "fp16",
        "max_batch": 8,
        "onnx": "model.onnx",
        "compute_capability": capability,
        "cuda_driver": cuda_driver,
    }
    md.write(info, md.sidecar_path(path))
    return path


def install_fakes(monkeypatch, version, fail_init=None):
    """Make fake ``tensorrt`` and ``pycuda`` importable; returns (fake pycuda.driver, engines deserialized)."""
    import sys

    cuda, engines = FakeCuda(fail_init=fail_init), []
    pycuda = types.ModuleType("pycuda")
    pycuda.__file__ = "fake-pycuda"
    pycuda.driver = cuda
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(version, cuda, engines))
    return cuda, engines


class FakeBuilder(object):
    """Stands in for NVIDIA's builder (``jetson.engine_build.TensorRTBuilder``): ``build`` writes the bytes
    the fake runtime deserializes (``data``), or raises ``fail`` (a BackendError), and counts its calls."""

    def __init__(self, data=b"fake engine", fail=None, outputs=("probabilities",), input_name="face"):
        self.data, self.fail, self.outputs, self.input_name, self.builds = data, fail, outputs, input_name, 0

    def effective_precision(self, precision, log=None):
        return precision

    def trtexec_command(self, *args):
        return "trtexec --onnx={} --saveEngine={}".format(args[0], args[1])

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
        self.builds += 1
        if self.fail is not None:
            raise self.fail
        data = self.data(onnx_path) if callable(self.data) else self.data
        with open(engine_path, "wb") as handle:
            handle.write(data)
        return precision, self.input_name, list(self.outputs)
