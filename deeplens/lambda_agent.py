"""The fer-edge agent as an AWS DeepLens Lambda: edge parts plus the DeepLens adapters.

    AwscamSource -> HaarDetector -> EmotionClassifier(AwscamBackend) -> IouTracker -> PublishPolicy
        -> GreengrassPublisher ($aws/things/<thing>/infer), face lifecycle (tracks, state),
        annotated frames -> ProjectStream (FIFO)

The parts are put together by ``edge.agent.assembly.assemble`` and run by ``edge.agent.loop.run_agent``, the
functions every fer-edge agent uses; the DeepLens supplies its backend, source, publisher and
stream (:func:`device_factories`). Settings come
from the Lambda's environment variables: the agent's ``FER_EDGE_*`` keys as ``edge.config.agent``
reads them (``FER_EDGE_PUBLISH``, ``FER_EDGE_INTERVAL``, ``FER_EDGE_MIN_FACE``,
``FER_EDGE_DEVICE_ID`` (default: the thing name), ``FER_EDGE_MODEL``, ``FER_EDGE_STATS_INTERVAL``,
``FER_EDGE_LOG_LEVEL``, ...), ``FER_EDGE_HAAR_CASCADE`` (``edge.detect.haar``), and the DeepLens ones
in :data:`DEEPLENS_ENV`. ``FER_EDGE_BROKER``/``FER_EDGE_ANNOTATE``/``FER_EDGE_VIEW`` do not apply here
(messages go through the Greengrass core, frames to the project stream) and are ignored with a warning.

:func:`supervise` runs the agent until stopped and starts it again after a failure (model
optimisation failing, the camera service restarting), waiting 5 s, then longer, up to 5 min; a
Greengrass long-lived Lambda is meant to run for ever. Python 3.6/3.7 compatible (device code).
"""

import glob
import json
import logging
import os
import threading
import time

from edge.classifier import EmotionClassifier
from edge.config.agent import load_config
from edge.detect.base import DetectorError
from edge.detect.factory import make_detector
from edge.detect.haar import CASCADE_ENV, HAAR_FILE, HaarDetector, find_haar_cascade

from .awscam_backend import DEFAULT_ARTIFACTS_DIR, DEFAULT_MODEL_NAME, AwscamBackend
from .awscam_source import AwscamSource
from .greengrass_publisher import GreengrassPublisher, thing_name
from .stream import DEFAULT_FIFO, ProjectStream

log = logging.getLogger(__name__)

AUTOSTART_ENV = "FER_EDGE_LAMBDA_AUTOSTART"
# DeepLens settings (environment variable -> (key, default, meaning)).
DEEPLENS_ENV = {
    "FER_EDGE_DEEPLENS_MODEL_NAME": (
        "model_name",
        DEFAULT_MODEL_NAME,
        "artifact name looked for in FER_EDGE_MODEL when it is a folder",
    ),
    "FER_EDGE_DEEPLENS_GPU": ("gpu", "1", "1: awscam.Model on the GPU ({'GPU': 1}); 0: on the CPU"),
    "FER_EDGE_DEEPLENS_MO_AUX": (
        "mo_aux",
        "",
        "JSON aux_inputs of mo.optimize; empty: from the model's metadata (awscam_backend.mo_options)",
    ),
    "FER_EDGE_DEEPLENS_FIFO": ("fifo", DEFAULT_FIFO, "project-stream FIFO; empty or 'off': no stream"),
    "FER_EDGE_DEEPLENS_STREAM": ("stream_resolution", "480p", "project-stream size: 480p, 720p, 1080p, WxH, source"),
    "FER_EDGE_DEEPLENS_INFER_TOPIC": ("infer_topic", "1", "1: publish on $aws/things/<thing>/infer"),
    "FER_EDGE_DEEPLENS_FER_TOPICS": ("fer_topics", "0", "1: also publish on <prefix>/<device_id>/events|stats|status"),
}
# Where OpenCV 3.x builds (the DeepLens system OpenCV among them) install the cascades, beyond the
# folders edge.detect.haar knows; not verified on a device (docs/deeplens.md).
DEEPLENS_CASCADE_DIRS = (
    "/usr/local/share/OpenCV/haarcascades",
    "/usr/share/OpenCV/haarcascades",
    "/opt/intel/opencv/etc/haarcascades",
    "/opt/intel/computer_vision_sdk/opencv/etc/haarcascades",
)


class LambdaConfigError(ValueError):
    """A bad DeepLens setting; the message names the environment variable."""


def _flag(value, name):
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise LambdaConfigError("{}={!r}: expected 1 or 0".format(name, value))


def autostart(env=None):
    """Whether importing the Lambda starts the loop (``FER_EDGE_LAMBDA_AUTOSTART``, default 1)."""
    env = os.environ if env is None else env
    return _flag(env.get(AUTOSTART_ENV, "1"), AUTOSTART_ENV)


def deeplens_settings(env=None):
    """The DeepLens settings (:data:`DEEPLENS_ENV`) from ``env``, checked."""
    env = os.environ if env is None else env
    out = {}
    for name, (key, default, _) in DEEPLENS_ENV.items():
        out[key] = env.get(name, default)
    out["gpu"] = _flag(out["gpu"], "FER_EDGE_DEEPLENS_GPU")
    out["infer_topic"] = _flag(out["infer_topic"], "FER_EDGE_DEEPLENS_INFER_TOPIC")
    out["fer_topics"] = _flag(out["fer_topics"], "FER_EDGE_DEEPLENS_FER_TOPICS")
    if not (out["infer_topic"] or out["fer_topics"]):
        raise LambdaConfigError(
            "FER_EDGE_DEEPLENS_INFER_TOPIC and FER_EDGE_DEEPLENS_FER_TOPICS are both 0: nothing would be published"
        )
    try:
        aux = json.loads(out["mo_aux"]) if out["mo_aux"].strip() else None
    except ValueError as exc:
        raise LambdaConfigError("FER_EDGE_DEEPLENS_MO_AUX: not valid JSON ({})".format(exc)) from exc
    if aux is not None and not isinstance(aux, dict):
        raise LambdaConfigError("FER_EDGE_DEEPLENS_MO_AUX: expected a JSON object")
    out["mo_aux"] = aux
    if out["fifo"].strip().lower() in ("", "off", "0", "none"):
        out["fifo"] = None
    return out


LAMBDA_DETECTOR = "haar"


def agent_config(env=None):
    """The agent settings (``edge.config.agent``) with the device id defaulting to the thing name."""
    env = os.environ if env is None else env
    overrides = {}
    if not env.get("FER_EDGE_DEVICE_ID") and env.get("AWS_IOT_THING_NAME"):
        overrides["device_id"] = env["AWS_IOT_THING_NAME"]
    if not env.get("FER_EDGE_DETECTOR"):
        # The Lambda runs its one model on awscam's inference engine and ships no other runtime
        # (ONNX Runtime/OpenVINO Python); BlazeFace needs one, so the Lambda keeps Haar unless told.
        overrides["detector"] = LAMBDA_DETECTOR
    config = load_config(None, env=env, overrides=overrides)
    why = {
        "broker": "messages go through the Greengrass core",
        "annotate": "annotated frames go to the project stream",
        "view": "the project stream shows the annotated frames; the Lambda serves no live view",
    }
    for key in ("broker", "annotate", "view"):
        if config[key]:
            log.warning("FER_EDGE_%s is ignored on DeepLens (%s)", key.upper(), why[key])
    return config


def make_haar(min_size):
    """The Haar detector, with the cascade from edge.detect.haar's search or the DeepLens OpenCV folders."""
    try:
        return HaarDetector(min_size=min_size, cascade=find_haar_cascade())
    except DetectorError as first:
        if os.environ.get(CASCADE_ENV):
            raise
        for folder in DEEPLENS_CASCADE_DIRS:
            path = os.path.join(folder, HAAR_FILE)
            if os.path.isfile(path):
                return HaarDetector(min_size=min_size, cascade=path)
        found = glob.glob("/usr/*/share/*/haarcascades/" + HAAR_FILE) + glob.glob("/opt/*/*/haarcascades/" + HAAR_FILE)
        if found:
            return HaarDetector(min_size=min_size, cascade=sorted(found)[0])
        raise DetectorError(
            "{}; also looked in {} (set {} in the Lambda's environment)".format(
                first, ", ".join(DEEPLENS_CASCADE_DIRS), CASCADE_ENV
            )
        ) from first


def model_location(config):
    """FER_EDGE_MODEL, or the DeepLens artifacts folder."""
    return config["model"] or DEFAULT_ARTIFACTS_DIR


def device_factories(config, settings, publisher, stop, camera=None, mo=None):
    """The DeepLens parts for ``edge.agent.assembly.assemble``: the awscam backend (``backend`` holds it once
    made, for the status), Haar (or the configured detector), the Greengrass publisher (already
    started: borrowed, closed by :func:`run` with the reason), the awscam source (or a file or stream
    URI, for trying the Lambda on recorded video) and the project stream. Returns (factories, holder)."""
    from edge.agent.assembly import Factories

    holder = {}

    def classifier(cfg):
        holder["backend"] = AwscamBackend(
            model_location(cfg),
            gpu=settings["gpu"],
            model_name=settings["model_name"],
            mo_aux=settings["mo_aux"],
            awscam=camera,
            mo=mo,
        )
        return EmotionClassifier(holder["backend"])

    def detector(cfg):
        if cfg["detector"] == "haar":
            return make_haar(cfg["min_face"])
        return make_detector(cfg["detector"], min_size=cfg["min_face"], yunet_model=cfg["yunet_model"])

    def source(cfg):
        if cfg["source"] in ("0", "awscam"):
            return AwscamSource(camera=camera, stop=stop)
        from edge.agent.sources import source_from_config

        return source_from_config(cfg)

    def sinks(cfg, source, publisher, classifier):
        return (
            [(None, ProjectStream(settings["fifo"], resolution=settings["stream_resolution"]))]
            if settings["fifo"]
            else []
        )

    return Factories(
        classifier=classifier,
        detector=detector,
        publisher=lambda cfg: publisher,
        source=source,
        sinks=sinks,
        borrowed=("publisher",),
    ), holder


def run(env=None, stop=None, publisher=None, camera=None, mo=None):
    """Build the parts (``edge.agent.assembly.assemble``, the function every fer-edge agent uses) and run
    the agent until ``stop`` is set; returns the run summary.

    The publisher starts first, so the ``online`` status (``phase: loading-model``) and any
    failure to load the model (``offline`` with the error as ``reason``) reach the topic. The
    agent has every part the host agent has: tracker with hysteresis, publish policy, the face
    lifecycle (track messages and the device state, ``track_events``), Home Assistant discovery
    (refused by the Greengrass publisher: no retained messages). ``camera``/``mo``: stand-ins for
    the ``awscam``/``mo`` modules (default: the device's).
    """
    from edge.agent.assembly import assemble
    from edge.agent.assembly import run as run_assembly

    env = os.environ if env is None else env
    stop = stop or threading.Event()
    config = agent_config(env)
    settings = deeplens_settings(env)
    root = logging.getLogger()
    if not root.handlers:  # the Greengrass runtime configures the root logger; plain Python does not
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for package in ("edge", "deeplens"):  # the agent's loggers are named by module (edge.*, deeplens.*)
        logging.getLogger(package).setLevel(config["log_level"])
    publisher = publisher or GreengrassPublisher(
        thing=thing_name(env),
        device_id=config["device_id"],
        prefix=config["topic_prefix"],
        infer=settings["infer_topic"],
        fer_topics=settings["fer_topics"],
    )
    publisher.start()
    assembly = None
    reason = "shutdown"
    try:
        publisher.publish_status("online", phase="loading-model", model=model_location(config))
        factories, holder = device_factories(config, settings, publisher, stop, camera=camera, mo=mo)
        assembly = assemble(config, factories)
        classifier = assembly.classifier
        publisher.publish_status(
            "online", phase="running", model=classifier.model_id, runtime=classifier.runtime, ir=holder["backend"].xml
        )
        log.info(
            "fer-edge on DeepLens: device %s, model %s (%s), detector %s, publishing %r, stream %s",
            config["device_id"],
            classifier.model_id,
            holder["backend"].xml,
            config["detector"],
            publisher,
            settings["fifo"] or "off",
        )
        return run_assembly(assembly, stop)
    except Exception as exc:
        reason = "error: {}: {}".format(type(exc).__name__, exc)[:500]
        raise
    finally:
        if assembly is not None:
            try:
                assembly.close()
            except Exception:  # pragma: no cover
                log.exception("closing the agent's parts")
        if isinstance(publisher, GreengrassPublisher):
            publisher.close(reason=reason)
        else:
            publisher.close()


def supervise(env=None, stop=None, first_delay=5.0, max_delay=300.0, **parts):
    """Run the agent until ``stop`` is set, starting it again after a failure (back-off 5 s .. 5 min)."""
    stop = stop or threading.Event()
    delay = first_delay
    while not stop.is_set():
        started = time.time()
        try:
            summary = run(env, stop=stop, **parts)
            log.info("agent ended: %s", summary)
        except Exception:
            log.exception("the fer-edge agent failed; starting it again in %.0f s", delay)
        if stop.is_set():
            break
        if time.time() - started > 10 * max_delay:
            delay = first_delay  # it had been running well: restart quickly
        stop.wait(delay)
        delay = min(max_delay, delay * 2)


def start_in_thread(env=None, stop=None, **parts):
    """:func:`supervise` in a non-daemon thread (the Lambda process stays up for it); returns the thread."""
    thread = threading.Thread(target=supervise, args=(env,), kwargs=dict(parts, stop=stop), name="fer-edge-deeplens")
    thread.start()
    return thread
