"""TensorRT and CUDA on this machine: importing them (real modules of a supported version, or a
BackendError that says what to do) and the GPU readiness check (:func:`device_info`).

Device code: Python 3.6 syntax; only the standard library at import. ``tensorrt`` and ``pycuda``
are imported inside :func:`import_tensorrt` and :func:`import_cuda`, the one place each is imported
for running engines. TensorRT 8.x (JetPack 4.6 ships 8.2.1) and 10.x (JetPack 6) are supported
(``SUPPORTED_MAJORS``, the one supported-version set of the project).

:func:`device_info` is the GPU readiness check (``pycuda.driver.init()``, the device's name, compute
capability and the CUDA driver version): the same call the backend makes, so a user outside the
``video`` group or a pycuda built against another CUDA fails here with the project's message
instead of a traceback.
"""

import collections

from edge.backends.base import BackendError, module_installed

DEFAULT_PRECISION = "fp16"
DEFAULT_MAX_BATCH = 8
SUPPORTED_MAJORS = (8, 10)

NOT_INSTALLED = (
    "TensorRT/pycuda not installed: the TensorRT backend runs on a Jetson (JetPack 4.6: "
    "TensorRT 8.2 is part of JetPack; pycuda: the bundle's install.sh builds it) or on a host "
    "with an NVIDIA GPU"
)
CUDA_HINTS = (
    "is this user in the 'video' group (sudo usermod -a -G video $USER; the service user is), "
    "and was pycuda built against this machine's CUDA (reinstall it: sudo ./install.sh)?"
)

DeviceInfo = collections.namedtuple("DeviceInfo", "name compute_capability cuda_driver")


def version_major(version):
    return int(str(version).split(".")[0])


def import_tensorrt():
    """The ``tensorrt`` module when it is real and a supported version, else BackendError saying why."""
    if not module_installed("tensorrt"):
        raise BackendError(NOT_INSTALLED + " (no usable Python module 'tensorrt')")
    import tensorrt as trt

    if not hasattr(trt, "Runtime") or not hasattr(trt, "__version__"):
        raise BackendError(NOT_INSTALLED + " (the 'tensorrt' module has no Runtime: type stubs only?)")
    if version_major(trt.__version__) not in SUPPORTED_MAJORS:
        raise BackendError(
            "TensorRT {} is not supported (supported: {}; 8.x as in JetPack 4.6/5, 10.x as in JetPack 6)".format(
                trt.__version__, ", ".join("{}.x".format(m) for m in SUPPORTED_MAJORS)
            )
        )
    return trt


def import_cuda():
    """``pycuda.driver``, or BackendError."""
    if not module_installed("pycuda"):
        raise BackendError(NOT_INSTALLED + " (no Python module 'pycuda')")
    try:
        import pycuda.driver as cuda
    except ImportError as exc:  # e.g. a pycuda built against another CUDA: libcuda/libcudart symbols
        raise BackendError("pycuda is installed but does not load ({}): {}".format(exc, CUDA_HINTS)) from exc
    return cuda


def cuda_error(what, exc):
    """A pycuda/CUDA failure as the project's error (message, no traceback)."""
    return BackendError("CUDA: {} failed ({}: {}): {}".format(what, type(exc).__name__, exc, CUDA_HINTS))


def device_info(device=0):
    """DeviceInfo(name, 'major.minor', 'major.minor' of the CUDA driver) of CUDA device ``device``.

    The readiness check of the TensorRT path: ``pycuda.driver.init()`` and the device query, as the
    backend does them; BackendError (with the likely causes) when CUDA cannot be used by this user.
    """
    cuda = import_cuda()
    try:
        cuda.init()
        dev = cuda.Device(device)
        name = str(dev.name()).strip()
        major, minor = dev.compute_capability()
        driver = int(cuda.get_driver_version())
    except Exception as exc:  # pycuda.driver.Error and its subclasses (LogicError, RuntimeError, ...)
        raise cuda_error("cuInit/device {} query".format(device), exc) from exc
    return DeviceInfo(name, "{}.{}".format(major, minor), "{}.{}".format(driver // 1000, (driver % 1000) // 10))


def gpu_ready(device=0):
    """(True, DeviceInfo) when TensorRT and CUDA can run here, else (False, the reason)."""
    try:
        import_tensorrt()
        return True, device_info(device)
    except BackendError as exc:
        return False, str(exc)
