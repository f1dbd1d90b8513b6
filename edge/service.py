"""Assemble and run the agent from a config dict (``edge.config.load_config``).

Shared by ``fer-edge run`` on a host and ``python3 -m jetson`` on a Jetson; each passes its own
classifier or publisher when it has one (TensorRT backend, embedded broker). Python 3.6 compatible.
"""

import logging

from .agent import run_agent
from .annotate import AnnotatedWriter
from .classifier import load_classifier
from .detect import make_detector
from .lifecycle import lifecycle_from_config
from .policy import PublishPolicy
from .mqtt_publisher import MqttPublisher
from .publish import MemoryPublisher
from .sources import open_source
from .track import DEFAULT_HYSTERESIS_FRAMES, DEFAULT_HYSTERESIS_MARGIN, IouTracker

log = logging.getLogger("fer_edge.service")


MEMORY_KEEP = 100  # newest messages an agent without a broker keeps (it may run for days)


def make_publisher(config):
    """MqttPublisher for ``config['broker']``; a bounded MemoryPublisher (nothing leaves) when it is empty.

    The broker settings are validated once into one value (``edge.mqtt_settings``); the
    publisher queues in ``<data_dir>/outbox-<device_id>.sqlite3`` (memory when ``data_dir`` is
    empty); the password comes from ``password_file`` or ``$FER_EDGE_PASSWORD``.
    """
    from .mqtt_settings import from_config
    if not config["broker"]:
        return MemoryPublisher(config["device_id"], config["topic_prefix"], keep=MEMORY_KEEP)
    return MqttPublisher.from_settings(from_config(config), config["device_id"], prefix=config["topic_prefix"],
                                       data_dir=config.get("data_dir", "") or None,
                                       max_queued=config["queue_max_events"],
                                       queue_max_bytes=config["queue_max_bytes"],
                                       flush_timeout=config["flush_timeout"])


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
    return make_detector(config["detector"], min_size=config["min_face"], yunet_model=config["yunet_model"],
                         model=config.get("detector_model") or None, runtime=runtime, backend=backend,
                         threads=config.get("threads", 0), score_threshold=config.get("detector_score"),
                         nms_iou=config.get("detector_nms"), tiles=config.get("detector_tiles"),
                         align=config.get("align"))


def serve(config, stop=None, classifier=None, publisher=None, source=None, detector=None):
    """Run the agent until its source ends or ``stop`` is set; returns the run summary.

    Parts are created before anything is published, so a bad model, source or detector is
    reported before the agent goes online. The publisher is always closed (offline status sent,
    pending events flushed), the source released, the annotated output finished and the live
    view (config ``view``) stopped.
    """
    classifier = classifier or load_classifier(config["model"] or None, runtime=config["runtime"] or None,
                                               **thread_options(config))
    detector = detector or detector_from_config(config)
    tracker = IouTracker(config["iou"], config["max_missed"], config["smoothing"],
                         config.get("hysteresis_margin", DEFAULT_HYSTERESIS_MARGIN),
                         config.get("hysteresis_frames", DEFAULT_HYSTERESIS_FRAMES))
    policy = PublishPolicy(config["publish"], config["interval"])
    publisher = publisher or make_publisher(config)
    source = source or open_source(config["source"])
    annotator = AnnotatedWriter(config["annotate"], fps=getattr(source, "fps", None)) if config["annotate"] else None
    sinks = [annotator] if annotator is not None else []
    view = None
    if config.get("view"):
        from .live_view import LiveView
        try:
            view = LiveView.from_address(config["view"], publisher=publisher, model_id=classifier.model_id,
                                         device_id=config["device_id"])
        except BaseException:
            source.close()
            raise
        sinks.append(view)
    lifecycle = lifecycle_from_config(config, classifier, source)
    log.info("agent %s: source %s, model %s on %s, publisher %r", config["device_id"], config["source"],
             classifier.model_id, classifier.runtime, publisher)
    publisher.start()
    try:
        if config.get("homeassistant"):
            from .homeassistant import announce
            announce(publisher, config["device_id"], config["topic_prefix"], config["homeassistant_prefix"],
                     classifier.model_id)
        summary = run_agent(source, detector, classifier, tracker, publisher, policy, config["device_id"], stop=stop,
                            stats_interval=config["stats_interval"], sinks=sinks, lifecycle=lifecycle)
        if lifecycle is not None:
            summary["tracks"] = dict((k, lifecycle.counts[k]) for k in ("new", "update", "end"))
        if annotator is not None:
            summary["annotated"] = annotator.path
        if view is not None:
            summary["view"] = view.url
        return summary
    finally:
        source.close()
        for sink in sinks:
            try:
                sink.close()
            except Exception as exc:  # the publisher must still flush and go offline
                log.error("closing %s: %s: %s", type(sink).__name__, type(exc).__name__, exc)
        publisher.close()
