"""The Greengrass component's install check: can this Python run the fer-edge agent here?

    python3 <artifact>/edge/greengrass/check.py deeplens|jetson

The component recipe (``fer-edge bundle greengrass``, docs/greengrass.md) runs this file by path in
its Install step, before anything imports the ``edge`` package (which needs numpy and OpenCV at
import), so a missing module is reported by name instead of as a traceback. It checks the Python
version and the modules the target needs:

* every target: Python 3.6+, numpy, OpenCV (``cv2``), paho-mqtt;
* ``deeplens`` (DeepLens hardware or any x86-64 Linux, OpenVINO): ``openvino``;
* ``jetson``: ``tensorrt`` and ``pycuda`` (the GPU); without them ``onnxruntime`` runs the models
  on the CPU, which is reported as a warning.

It prints one line per finding and exits 0 when the agent can run, 1 when it cannot (Greengrass
then reports the Install step, and so the deployment, as failed, with these lines in the
component's log), 2 on a bad argument. Standard library only; kept parseable by old Pythons so
that a Python that is too old is told so instead of failing on syntax.
"""

import sys
from typing import List

COMMON = (
    ("numpy", "numpy (pip install numpy; JetPack ships python3-numpy)"),
    ("cv2", "OpenCV's Python module cv2 (pip install opencv-python-headless; JetPack ships it)"),
    ("paho", "paho-mqtt (pip install 'paho-mqtt<3'; 1.6.1 on Python 3.6)"),
)
TARGETS = ("deeplens", "jetson")
MIN_PYTHON = (3, 6)


def installed(name):
    """True when module ``name`` can be found (not imported: finding is enough here)."""
    try:
        import importlib.util

        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def check(target, version=None, found=installed):
    """(problems, warnings, notes): lists of text lines about running ``target`` here."""
    version = tuple(version or sys.version_info[:3])
    problems: List[str] = []
    warnings: List[str] = []
    notes: List[str] = []
    if version[:2] < MIN_PYTHON:
        problems.append(
            "Python {} is too old: fer-edge's device code needs {}.{} or newer; install a newer "
            "Python and set the component configuration key Python to it (docs/greengrass.md)".format(
                ".".join(str(v) for v in version), MIN_PYTHON[0], MIN_PYTHON[1]
            )
        )
        return problems, warnings, notes
    notes.append("Python {} ({})".format(".".join(str(v) for v in version), sys.executable))
    for module, what in COMMON:
        if found(module):
            notes.append("found {}".format(module))
        else:
            problems.append("missing {}".format(what))
    if target == "deeplens":
        if found("openvino"):
            notes.append("found openvino")
        else:
            problems.append(
                "missing OpenVINO's Python runtime (pip install openvino; a release that reads IR v11 "
                "and ONNX, 2022.1 or newer, for this Python)"
            )
    elif target == "jetson":
        gpu = [m for m in ("tensorrt", "pycuda") if not found(m)]
        if not gpu:
            notes.append("found tensorrt and pycuda: the models run as TensorRT engines on the GPU")
        elif found("onnxruntime"):
            warnings.append(
                "{} not found: the models run on the CPU with ONNX Runtime (much slower); JetPack "
                "ships tensorrt, pip install pycuda (docs/jetson.md)".format(" and ".join(gpu))
            )
        else:
            problems.append(
                "{} not found and no onnxruntime either: nothing can run the models (JetPack ships "
                "tensorrt; pip install pycuda)".format(" and ".join(gpu))
            )
    return problems, warnings, notes


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in TARGETS:
        sys.stderr.write("usage: greengrass_check.py {}\n".format("|".join(TARGETS)))
        return 2
    problems, warnings, notes = check(argv[0])
    for line in notes:
        print("fer-edge check: ok: " + line)
    for line in warnings:
        print("fer-edge check: warning: " + line)
    for line in problems:
        print("fer-edge check: error: " + line)
    sys.stdout.flush()
    if problems:
        sys.stderr.write(
            "fer-edge check: the agent cannot run with this Python ({} problem(s) above)\n".format(len(problems))
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
