"""The Jetson agent: ``python3 -m jetson [--config /etc/fer-edge/agent.json] [--check-camera] [--check-gpu] [--build-engine]``.

Reads the agent config (``edge.config.agent.load_config``: defaults < file < FER_EDGE_* environment <
flags), picks the model runtime and runs ``edge.agent.service.serve`` (the parts put together by
``edge.agent.assembly``, one or several cameras: config ``cameras``) until SIGINT/SIGTERM:

* config ``model`` is an ``.onnx`` (default: the bundle's ``model/model.onnx``), TensorRT + pycuda
  are installed and CUDA works for this user (``--check-gpu``): ``jetson.engine.ensure_engine``
  reuses or builds the FP16 engine in the engine folder (``--engine-dir``, ``$FER_EDGE_ENGINE_DIR``,
  default ``/var/lib/fer-edge/engines``), checks a new engine against the bundle's
  ``model/model.check.npz`` through the TensorRT backend, and the backend runs it;
* an ``.engine``: loaded as it is (its sidecar must match this TensorRT, GPU and CUDA driver);
* otherwise (no TensorRT, CUDA unusable, ``runtime: onnxruntime``, or the engine build or check
  failed): ONNX Runtime, with a warning, when it is installed (install.sh puts it in the bundle's
  venv); a failed build is not retried at every start but after a back-off (``jetson.engine``).

The face detector (config ``detector``, default BlazeFace; ``detector_model`` default: the bundle's
``model/detector.onnx``) follows the same rule: its own FP16 engine (batch up to the whole frame
plus 4x2 tiles), so detection and classification both run on the GPU. Haar and YuNet stay on
the CPU when chosen.

Events go out through edge's MQTT publisher (``edge.agent.service``). Logs go to stdout (journald under
systemd). The service's working directory is /var/lib/fer-edge (StateDirectory): engines now, the
offline event queue. Exit status: 0 done, 2 error (camera, runtime, CUDA, broker), 78 bad config
(the systemd unit does not restart on 78), also for a missing, corrupt or wrong model or detector file.

Python 3.6 compatible (device code).
"""

import argparse
import json
import logging
import os
import signal
import sys
import threading

from edge.backends.base import BackendError, module_installed
from edge.classifier import resolve_model
from edge.config.agent import BY_NAME, ConfigError, load_config

from . import engine, trt_backend

log = logging.getLogger(__name__)

DEFAULT_CONFIG = "/etc/fer-edge/agent.json"
BUNDLE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED_MODEL = os.path.join(BUNDLE_ROOT, "model", "model.onnx")
BUNDLED_DETECTOR = os.path.join(BUNDLE_ROOT, "model", "detector.onnx")
DETECTOR_MAX_BATCH = 9  # the whole frame + up to 4x2 tiles in one engine call
DETECTOR_ENGINE_STEM = "detector"
EXIT_ERROR = 2
EXIT_CONFIG = 78  # EX_CONFIG; fer-edge.service has RestartPreventExitStatus=78


def default_model():
    """The bundle's model/model.onnx when present (installed layout), else edge's shipped model."""
    if os.path.isfile(BUNDLED_MODEL):
        return BUNDLED_MODEL
    from edge.classifier import default_model_path

    return default_model_path()


def default_detector():
    """The bundle's model/detector.onnx when present (installed layout), else edge's shipped default."""
    if os.path.isfile(BUNDLED_DETECTOR):
        return BUNDLED_DETECTOR
    from edge.detect.factory import DEFAULT_DETECTOR, shipped_detector_path

    return shipped_detector_path(DEFAULT_DETECTOR)


def choose_runtime(model, runtime, tensorrt_ok, why_not=None):
    """How to run ``model``: 'engine' (load the .engine), 'build' (ensure an engine from the ONNX,
    then TensorRT) or 'fallback' (load_classifier, ONNX Runtime). BackendError when the config
    asks for TensorRT and it cannot run here (``why_not``: the reason, default: not installed)."""
    model = str(model)
    if model.endswith(".engine"):
        if runtime and runtime != "tensorrt":
            raise BackendError("{}: a TensorRT engine cannot run on runtime '{}'".format(model, runtime))
        return "engine"
    if model.endswith(".onnx") and runtime in ("", "tensorrt"):
        if tensorrt_ok:
            return "build"
        if runtime == "tensorrt":
            raise BackendError("config asks for runtime 'tensorrt': " + (why_not or trt_backend.NOT_INSTALLED))
    return "fallback"


def _on_gpu_or_cpu(model, runtime, gpu, build, on_tensorrt, on_cpu, what, engine_name):
    """The one rule for both models (see the module doc): load the ``.engine``, or ``build`` one
    from the ONNX and load it with ``on_tensorrt(engine)``; when TensorRT cannot run here or the
    build/check fails, ``on_cpu()`` (ONNX Runtime) with a warning, unless the config insists on
    TensorRT. ``gpu``: (ok, reason) from :func:`_gpu_ok` (or a bool)."""
    ok, why_not = gpu if isinstance(gpu, tuple) else (bool(gpu), None)
    how = choose_runtime(model, runtime, ok, why_not)
    if how == "engine":
        return on_tensorrt(model)
    if how == "build":
        try:
            return on_tensorrt(build(model))
        except BackendError as exc:
            if runtime == "tensorrt" or not module_installed("onnxruntime"):
                raise
            log.error("TensorRT %s engine unavailable (%s); falling back to ONNX Runtime", engine_name, exc)
    elif model.endswith(".onnx") and runtime != "onnxruntime":
        log.warning(
            "%s: running the %s %s with ONNX Runtime on the CPU (much slower on a Jetson)",
            why_not or trt_backend.NOT_INSTALLED,
            what,
            model,
        )
    return on_cpu()


def _gpu_ok():
    """(True, DeviceInfo) when TensorRT + pycuda are installed and CUDA is usable by this user
    (``pycuda.driver.init()`` and the device query), else (False, the reason)."""
    if not trt_backend.tensorrt_available():
        return False, trt_backend.NOT_INSTALLED
    return trt_backend.gpu_ready()


def make_classifier(
    config,
    precision=trt_backend.DEFAULT_PRECISION,
    max_batch=trt_backend.DEFAULT_MAX_BATCH,
    engine_dir=None,
    tensorrt_ok=None,
):
    """The EmotionClassifier the agent runs (see the module doc for the choice)."""
    from edge.classifier import load_classifier

    model = resolve_model(config["model"]) or default_model()
    runtime = config["runtime"]
    return _on_gpu_or_cpu(
        model,
        runtime,
        _gpu_ok() if tensorrt_ok is None else tensorrt_ok,
        lambda onnx: engine.ensure_engine(onnx, precision, max_batch, engine_dir, log=log.info),
        lambda engine: load_classifier(engine, runtime="tensorrt"),
        lambda: load_classifier(model, runtime=runtime if runtime != "tensorrt" else "onnxruntime"),
        "emotion model",
        "emotion-model",
    )


def make_face_detector(config, precision=trt_backend.DEFAULT_PRECISION, engine_dir=None, tensorrt_ok=None):
    """The face detector the agent runs: a neural one on its TensorRT engine when possible
    (ONNX Runtime otherwise, with a warning), Haar/YuNet as configured."""
    from edge import metadata as md
    from edge.agent.service import detector_from_config
    from edge.backends import load_backend
    from edge.detect.factory import NEURAL

    if config["detector"] not in NEURAL:
        return detector_from_config(config, runtime="")
    model = config["detector_model"] or default_detector()
    config = dict(config, detector_model=model)
    runtime = config["runtime"]
    return _on_gpu_or_cpu(
        model,
        runtime,
        _gpu_ok() if tensorrt_ok is None else tensorrt_ok,
        lambda onnx: engine.ensure_engine(
            onnx, precision, DETECTOR_MAX_BATCH, engine_dir, log=log.info, stem=DETECTOR_ENGINE_STEM
        ),
        lambda engine: detector_from_config(
            config, backend=load_backend(engine, runtime="tensorrt", kind=md.FACE_DETECTOR)
        ),
        lambda: detector_from_config(config, runtime="onnxruntime" if runtime in ("", "tensorrt") else runtime),
        "face detector",
        "detector",
    )


def install_stop_handlers(stop):
    """SIGINT/SIGTERM (systemctl stop) set ``stop``: the loop finishes its frame, flushes, goes offline."""

    def handler(signum, _frame):
        log.info("signal %d: stopping after this frame", signum)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def setup_logging(level="INFO"):
    """Logs to stdout; without timestamps under systemd (journald adds them)."""
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python3 -m jetson",
        description="fer-edge agent for NVIDIA Jetson: camera -> faces -> emotions (TensorRT) -> MQTT.",
    )
    parser.add_argument(
        "--config", help="agent config, JSON or INI [agent] (default: {} when it exists)".format(DEFAULT_CONFIG)
    )
    parser.add_argument(
        "--check-camera",
        action="store_true",
        help="open the configured source (every camera of 'cameras'), grab one frame each, "
        "print the resolutions and exit",
    )
    parser.add_argument(
        "--check-gpu",
        action="store_true",
        help="check that TensorRT and CUDA work for this user (pycuda.driver.init, the device), print the GPU and exit",
    )
    parser.add_argument(
        "--build-engine",
        action="store_true",
        help="build (or confirm) the TensorRT engines of the configured ONNX model and face detector, and exit",
    )
    parser.add_argument("--force", action="store_true", help="with --build-engine: rebuild even when current")
    parser.add_argument(
        "--engine-dir",
        help="folder for TensorRT engines (default: ${} or {}/engines)".format(engine.ENGINE_DIR_ENV, engine.STATE_DIR),
    )
    parser.add_argument(
        "--precision",
        choices=("fp16", "fp32", "int8"),
        default=trt_backend.DEFAULT_PRECISION,
        help="engine precision (int8 needs calibration faces: build it with python3 -m jetson.engine)",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=trt_backend.DEFAULT_MAX_BATCH,
        help="largest batch of faces per engine call (default %(default)s)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="with --check-camera: seconds to wait")
    group = parser.add_argument_group("agent settings (override the config file)")
    for option in BY_NAME.values():
        group.add_argument(
            "--" + option.name.replace("_", "-"),
            dest=option.name,
            type=option.type,
            default=None,
            help="{} (default: {!r})".format(option.help, option.default),
        )
    return parser


def _error(message):
    print("fer-edge-jetson: error: {}".format(message), file=sys.stderr, flush=True)


def main(argv=None):
    args = build_parser().parse_args(argv)
    config_path = args.config or (DEFAULT_CONFIG if os.path.isfile(DEFAULT_CONFIG) else None)
    try:
        config = load_config(config_path, overrides=dict((name, getattr(args, name)) for name in BY_NAME))
    except ConfigError as exc:
        _error(exc)
        return EXIT_CONFIG
    setup_logging(config["log_level"])
    if config_path:
        log.info("config %s", config_path)
    from edge.agent.loop import AgentError
    from edge.agent.sources import SourceError
    from edge.backends.base import ModelFileError
    from edge.delivery.client import PahoMissingError
    from edge.detect.base import DetectorConfigError, DetectorError, DetectorFileError

    try:
        if args.check_camera:
            return _check_cameras(config, args.timeout)
        if args.check_gpu:
            print(check_gpu(), flush=True)
            return 0
        if args.build_engine:
            return _build_engine(config, args)
        return _serve(config, args)
    except (ModelFileError, DetectorFileError, DetectorConfigError) as exc:
        # a missing, corrupt or wrong model file: restarting cannot fix it (the unit does not restart on 78)
        _error(exc)
        return EXIT_CONFIG
    except (BackendError, SourceError, DetectorError, AgentError, PahoMissingError, ValueError, OSError) as exc:
        # ValueError: MetadataError, a bad broker URL, a bad model file
        _error(exc)
        return EXIT_ERROR


def _check_cameras(config, timeout):
    """``--check-camera``: every configured camera (each entry of ``cameras``, else ``source``); exit 0
    when all give a frame, else 2 after reporting each one (the failing ones named with hints)."""
    from edge.agent.sources import SourceError
    from edge.config.cameras import camera_configs

    from .camera import check_camera, format_report

    failed = 0
    for camera in camera_configs(config):
        prefix = "{}: ".format(camera["device_id"]) if config.get("cameras") else ""
        try:
            print(prefix + format_report(check_camera(camera["source"], timeout)), flush=True)
        except SourceError as exc:
            failed += 1
            _error(prefix + str(exc))
    return EXIT_ERROR if failed else 0


def check_gpu():
    """The readiness report (``--check-gpu``): TensorRT version and the CUDA device, or BackendError."""
    ok, info = _gpu_ok()
    if not ok:
        raise BackendError(info)
    trt = trt_backend.import_tensorrt()
    return "TensorRT {}; GPU {} (compute capability {}); CUDA driver {}".format(
        trt.__version__, info.name, info.compute_capability, info.cuda_driver
    )


def _build_engine(config, args):
    model = resolve_model(config["model"]) or default_model()
    if not str(model).endswith(".onnx"):
        raise BackendError("--build-engine needs an ONNX model; config 'model' is {}".format(model))
    log.info("%s", check_gpu())
    path = engine.ensure_engine(
        model, args.precision, args.max_batch, args.engine_dir, log=log.info, force=args.force, retry_failed=True
    )
    print(path, flush=True)
    from edge.detect.factory import NEURAL

    if config["detector"] in NEURAL:
        detector = config["detector_model"] or default_detector()
        if str(detector).endswith(".onnx"):
            path = engine.ensure_engine(
                detector,
                args.precision,
                DETECTOR_MAX_BATCH,
                args.engine_dir,
                log=log.info,
                force=args.force,
                stem=DETECTOR_ENGINE_STEM,
                retry_failed=True,
            )
            print(path, flush=True)
    return 0


def _serve(config, args):
    """The agent on the Jetson's parts: ``edge.agent.service.serve`` (``edge.agent.assembly``) with the TensorRT
    classifier and detector as factories (made once, shared by every camera of a ``cameras``
    config, closed when the agent stops)."""
    from edge.agent.assembly import Factories
    from edge.agent.service import serve

    stop = threading.Event()
    install_stop_handlers(stop)
    factories = Factories(
        classifier=lambda cfg: make_classifier(cfg, args.precision, args.max_batch, args.engine_dir),
        detector=lambda cfg: make_face_detector(cfg, args.precision, args.engine_dir),
    )
    summary = serve(config, stop=stop, factories=factories)
    log.info("stopped: %s", json.dumps(summary, sort_keys=True))
    return 0
