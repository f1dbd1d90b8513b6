"""Run the agent from a config dict (``edge.config.agent.load_config``) with the host's parts.

Shared by ``fer-edge run`` on a host, ``python3 -m jetson`` on a Jetson and ``python3 -m deeplens``;
each passes what it has of its own (the Jetson's TensorRT classifier and detector as factories,
``fer-edge run``'s printing publisher, the DeepLens MJPEG source). The parts are put together by
``edge.agent.assembly`` (the function the DeepLens Lambda uses too); here are the host's defaults: the
classifier on ONNX Runtime/OpenVINO, the configured detector, the MQTT publisher, the annotated
writer and the live view. Python 3.6 compatible.
"""

import copy
import logging

from edge.agent.assembly import Factories, serve_assembled
from edge.agent.sources import source_from_config
from edge.classifier import load_classifier
from edge.delivery.base import MemoryPublisher
from edge.delivery.mqtt import MqttPublisher
from edge.detect.factory import make_detector
from edge.view.annotate import AnnotatedWriter

log = logging.getLogger(__name__)


MEMORY_KEEP = 100  # newest messages an agent without a broker keeps (it may run for days)


def make_publisher(config):
    """MqttPublisher for ``config['broker']``; a bounded MemoryPublisher (nothing leaves) when it is empty.

    The broker settings are validated once into one value (``edge.delivery.settings``); the
    publisher queues in ``<data_dir>/outbox-<device_id>.sqlite3`` (memory when ``data_dir`` is
    empty); the password comes from ``password_file`` or ``$FER_EDGE_PASSWORD``.
    """
    from edge.delivery.settings import from_config

    if not config["broker"]:
        return MemoryPublisher(config["device_id"], config["topic_prefix"], keep=MEMORY_KEEP)
    return MqttPublisher(
        from_config(config),
        config["device_id"],
        prefix=config["topic_prefix"],
        data_dir=config.get("data_dir", "") or None,
        max_queued=config["queue_max_events"],
        queue_max_bytes=config["queue_max_bytes"],
        flush_timeout=config["flush_timeout"],
    )


def thread_options(config, runtime=None):
    """Backend options for the CPU runtimes' thread count (``threads``; 0: the runtime's default)."""
    runtime = runtime if runtime is not None else config.get("runtime")
    if config.get("threads") and runtime in ("", None, "onnxruntime", "openvino"):
        return {"threads": int(config["threads"])}
    return {}


def detector_from_config(config, backend=None, runtime=None):
    """The face detector the config names, with its options (``backend``: an already loaded one)."""
    runtime = runtime if runtime is not None else (config.get("runtime") or None)
    if runtime == "tensorrt" and backend is None:
        runtime = None  # a TensorRT detector comes as a loaded backend (jetson.agent builds its engine)
    return make_detector(
        config["detector"],
        min_size=config["min_face"],
        yunet_model=config["yunet_model"],
        model=config.get("detector_model") or None,
        runtime=runtime,
        backend=backend,
        threads=config.get("threads", 0),
        score_threshold=config.get("detector_score"),
        nms_iou=config.get("detector_nms"),
        tiles=config.get("detector_tiles"),
        align=config.get("align"),
    )


def load_host_classifier(config):
    """The emotion classifier the config names, on the best runtime here (``runtime``, ``threads``)."""
    return load_classifier(config["model"] or None, runtime=config["runtime"] or None, **thread_options(config))


def host_sinks(config, source, publisher, classifier):
    """The host agent's frame sinks for a camera: the annotated writer (``annotate``) and the live
    view (``view``), as [(summary key, sink)]; what was made is closed again when the next fails."""
    sinks = []
    try:
        if config["annotate"]:
            sinks.append(("annotated", AnnotatedWriter(config["annotate"], fps=source.fps)))
        if config.get("view"):
            sinks.append(("view", live_view(config, publisher, classifier)))
    except BaseException:
        for _, sink in sinks:
            sink.close()
        raise
    return sinks


def live_view(config, publisher, classifier):
    """The live view the config asks for (``view``), with its token (read from ``view_token_file``,
    never logged) and its certificate pair for HTTPS (``view_cert_file``, ``view_key_file``)."""
    from edge.config.secrets import read_secret
    from edge.view.live import LiveView

    return LiveView.from_address(
        config["view"],
        publisher=publisher,
        model_id=classifier.model_id,
        device_id=config["device_id"],
        token=read_secret(config["view_token_file"]) if config.get("view_token_file") else None,
        cert_file=config.get("view_cert_file") or None,
        key_file=config.get("view_key_file") or None,
    )


def host_factories(factories=None):
    """``factories`` (``edge.agent.assembly.Factories``) with the host's parts where it gives none: the
    classifier from ``load_classifier``, the detector the config names, the MQTT (or memory)
    publisher, ``edge.agent.sources.source_from_config``, the annotated writer and the live view."""
    return (factories or Factories()).with_defaults(
        classifier=load_host_classifier,
        detector=detector_from_config,
        publisher=make_publisher,
        source=source_from_config,
        sinks=host_sinks,
    )


def serve(config, stop=None, classifier=None, publisher=None, source=None, detector=None, factories=None):
    """Run the agent until its sources end or ``stop`` is set; returns the run summary.

    The parts come from ``edge.agent.assembly.assemble`` (``factories``: what a device supplies, the
    host's parts for the rest; ``classifier``/``detector``: loaded ones the caller keeps and
    closes; ``publisher``/``source``: objects for a one-camera config, closed here). A config with
    ``cameras`` runs them all (``edge.agent.cameras``). Parts are created before anything is
    published, so a bad model, source or detector is reported before the agent goes online. The
    publishers are always closed (offline status sent, pending events flushed), the sources
    released, the annotated outputs finished and the live views (config ``view``) stopped.
    """
    factories = copy.copy(factories) if factories is not None else Factories()
    factories.borrowed = set(factories.borrowed)
    if config.get("cameras") and (publisher is not None or source is not None):
        raise ValueError(
            "serve: a config with 'cameras' opens each camera's source and publisher itself "
            "(pass factories=Factories(publisher=..., source=...) instead of objects)"
        )
    for name, part in (
        ("classifier", classifier),
        ("detector", detector),
        ("publisher", publisher),
        ("source", source),
    ):
        if part is not None:
            factories.given(name, part)
            if name in ("classifier", "detector"):
                factories.borrowed.add(name)
    return serve_assembled(config, host_factories(factories), stop)
