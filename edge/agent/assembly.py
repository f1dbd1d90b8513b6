"""The one place an agent is put together: parts from a config plus what the device supplies.

    assembly = assemble(config, Factories(classifier=..., detector=..., publisher=..., source=..., sinks=...))
    summary = run(assembly, stop)          # one camera: edge.agent.loop.run_agent; several: edge.agent.cameras
    assembly.close()

Every fer-edge agent goes through :func:`assemble`: the host agent and ``python3 -m deeplens``
(``edge.agent.service.serve`` with ONNX Runtime/OpenVINO, paho MQTT, the annotated writer and the live
view), the Jetson agent (its TensorRT classifier and detector, through ``edge.agent.service.serve``) and
the DeepLens Lambda (``deeplens.lambda_agent``: the awscam backend and source, the Greengrass
publisher, the project stream). Built here for each camera from its config (``edge.config.agent``):
tracker (with hysteresis), publish policy, face lifecycle (tracks topic and device state), the
device's frame sinks; Home Assistant discovery at start. One classifier and one detector are
loaded for all cameras; a camera with its own ``detector_tiles`` gets a view of the one detector
(same backend, other tiles); with ``auto`` tiles (the default) each camera runs its own detection
schedule on it (``edge.detect.scheduled``).

A factory is called with the (camera's) config: ``classifier(config)``, ``detector(config)``,
``publisher(camera_config)``, ``source(camera_config)`` (default: ``edge.agent.sources.source_from_config``),
``sinks(camera_config, source, publisher, classifier)`` -> ``[(summary_key or None, sink)]``
(default: none). What the factories made is closed by :meth:`Assembly.close`, except the parts
named in ``borrowed`` (the caller's to close).

Nothing here imports paho, an ML runtime or the live view (the DeepLens Lambda zip holds this
module). Python 3.6 compatible (device code).
"""

import copy
import logging

from edge.config.cameras import camera_configs
from edge.tracking.lifecycle import lifecycle_from_config
from edge.tracking.policy import PublishPolicy
from edge.tracking.track import DEFAULT_HYSTERESIS_FRAMES, DEFAULT_HYSTERESIS_MARGIN, IouTracker

log = logging.getLogger(__name__)

PARTS = ("classifier", "detector", "publisher", "source", "sinks")
# sink entry key -> ((summary key, the sink attribute it reports), ...)
SINK_SUMMARY = {"annotated": (("annotated", "path"), ("annotated_frames", "frames")), "view": (("view", "url"),)}


def _no_sinks(config, source, publisher, classifier):
    return []


def _open_source(config):
    from edge.agent.sources import source_from_config

    return source_from_config(config)


class Factories(object):
    """What a device supplies (see the module doc); ``borrowed``: names of parts the caller closes."""

    def __init__(self, classifier=None, detector=None, publisher=None, source=None, sinks=None, borrowed=()):
        self.classifier, self.detector, self.publisher = classifier, detector, publisher
        self.source, self.sinks = source, sinks
        self.borrowed = set(borrowed)
        unknown = self.borrowed - set(PARTS)
        if unknown:
            raise ValueError("Factories: borrowed names unknown parts {}".format(", ".join(sorted(unknown))))

    def with_defaults(self, **defaults):
        """A copy with the factories not given here taken from ``defaults``."""
        out = copy.copy(self)
        out.borrowed = set(self.borrowed)
        for name in PARTS:
            if getattr(out, name) is None and defaults.get(name) is not None:
                setattr(out, name, defaults[name])
        return out

    def given(self, name, part):
        """Use the object ``part`` (made by the caller) for ``name``, for a one-camera agent."""
        setattr(self, name, lambda *args: part)
        return self


def make_tracker(config):
    return IouTracker(
        config["iou"],
        config["max_missed"],
        config["smoothing"],
        config.get("hysteresis_margin", DEFAULT_HYSTERESIS_MARGIN),
        config.get("hysteresis_frames", DEFAULT_HYSTERESIS_FRAMES),
    )


def camera_detector(detector, config):
    """The shared detector (``edge.detect.base.FaceDetector``) for a camera: itself, or a view with the
    camera's ``detector_tiles`` on the same loaded model (neural detectors; the others do not tile);
    with ``auto`` tiles (the default), the camera's own ``edge.detect.scheduled.ScheduledDetector``
    on it (the whole frame, the small faces it follows, one tile per frame in rotation)."""
    if detector.tiles is None:
        return detector
    from edge.detect.tiling import AUTO, parse_tiles

    tiles = config.get("detector_tiles")
    view = detector.with_tiles(parse_tiles(tiles, "key 'detector_tiles'")) if tiles else detector
    if view.tiles != AUTO:
        return view
    from edge.detect.scheduled import ScheduledDetector

    return ScheduledDetector(view)


class Camera(object):
    """One camera's parts: its config, source, detector (view), tracker, policy, publisher, frame
    sinks ([(summary_key, sink)]) and lifecycle; ``state`` after a run: ended, stopped or failed."""

    def __init__(self, config, source, detector, tracker, policy, publisher, sinks, lifecycle, borrowed=()):
        self.config = config
        self.device_id = config["device_id"]
        self.source, self.detector, self.tracker, self.policy = source, detector, tracker, policy
        self.publisher, self.sink_entries, self.lifecycle = publisher, list(sinks), lifecycle
        self.borrowed = set(borrowed)
        self.state = None
        self.error = None
        self._closed = False

    @property
    def sinks(self):
        return [sink for _, sink in self.sink_entries]

    def view_url(self):
        """The URL of the camera's live view, or None without one."""
        for key, sink in self.sink_entries:
            if key == "view":
                return sink.url
        return None

    def summary_extra(self):
        """The run summary's additions: track counts, the annotated file and its frame counts, the live view's URL."""
        out = {}
        if self.lifecycle is not None:
            out["tracks"] = dict((k, self.lifecycle.counts[k]) for k in ("new", "update", "end"))
        for key, sink in self.sink_entries:
            for name, attribute in SINK_SUMMARY.get(key, ()):
                out[name] = getattr(sink, attribute)
        return out

    def close(self, close_publisher=None):
        """Release the source, close the sinks (errors logged), then close the publisher (pending
        messages flushed, offline status) unless it is borrowed. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.source is not None and "source" not in self.borrowed:
                self.source.close()
        finally:
            for sink in self.sinks:
                try:
                    sink.close()
                except Exception as exc:  # the publisher must still flush and go offline
                    log.error("closing %s: %s: %s", type(sink).__name__, type(exc).__name__, exc)
            if self.publisher is not None and "publisher" not in self.borrowed:
                (close_publisher or (lambda p: p.close()))(self.publisher)


class Assembly(object):
    """The parts of one agent: the shared classifier and detector, the cameras, and the cameras that
    could not be opened (``failed``: [(config, error text)])."""

    def __init__(self, config, classifier, detector, cameras, failed, borrowed=()):
        self.config, self.classifier, self.detector = config, classifier, detector
        self.cameras, self.failed = cameras, failed
        self.borrowed = set(borrowed)
        self._closed = False

    @property
    def multi(self):
        return bool(self.config.get("cameras"))

    def close(self, close_publisher=None):
        """Close every camera (:meth:`Camera.close`), then the detector and the classifier (unless
        borrowed). ``close_publisher``: how to close a publisher (default ``publisher.close()``)."""
        if self._closed:
            return
        self._closed = True
        try:
            for camera in self.cameras:
                try:
                    camera.close(close_publisher)
                except Exception as exc:
                    log.error("closing camera %s: %s: %s", camera.device_id, type(exc).__name__, exc)
        finally:
            _close_models(self.classifier, self.detector, self.borrowed)


def _close_models(classifier, detector, borrowed):
    for name, part in (("detector", detector), ("classifier", classifier)):
        if part is not None and name not in borrowed:
            try:
                part.close()
            except Exception as exc:  # pragma: no cover
                log.error("closing the %s: %s: %s", name, type(exc).__name__, exc)


def build_camera(config, classifier, detector, factories):
    """One camera's parts (:class:`Camera`); what was made is closed again when a later part fails."""
    tracker = make_tracker(config)
    policy = PublishPolicy(config["publish"], config["interval"])
    source = (factories.source or _open_source)(config)
    publisher = sinks = None
    try:
        publisher = factories.publisher(config)
        sinks = list((factories.sinks or _no_sinks)(config, source, publisher, classifier))
        lifecycle = lifecycle_from_config(config, classifier, source)
    except BaseException:
        Camera(config, source, None, None, None, publisher, sinks or [], None, factories.borrowed).close()
        raise
    return Camera(
        config,
        source,
        camera_detector(detector, config),
        tracker,
        policy,
        publisher,
        sinks,
        lifecycle,
        factories.borrowed,
    )


def assemble(config, factories):
    """Every part of the agent ``config`` describes (:class:`Assembly`), nothing started yet.

    Parts are made before anything is published, so a bad model, detector or source is reported
    before the agent goes online. A one-camera config fails on any error. With ``cameras``, a
    camera whose source cannot be opened (``SourceError``) is left out with an error line (the
    run summary lists it as failed) and the others run; when no camera can be opened the first
    error is raised.
    """
    missing = [name for name in ("classifier", "detector", "publisher") if getattr(factories, name) is None]
    if missing:
        raise ValueError("assemble: no factory for {}".format(", ".join(missing)))
    from edge.agent.sources import SourceError

    classifier = factories.classifier(config)
    detector = cameras = None
    failed = []
    try:
        detector = factories.detector(config)
        cameras = []
        configs = camera_configs(config)
        for camera_config in configs:
            try:
                cameras.append(build_camera(camera_config, classifier, detector, factories))
            except SourceError as exc:
                if len(configs) == 1:
                    raise
                log.error(
                    "camera %s: source %s cannot be opened, left out of this run: %s",
                    camera_config["device_id"],
                    camera_config["source"],
                    exc,
                )
                failed.append((camera_config, "{}: {}".format(type(exc).__name__, exc)))
        if not cameras:
            raise SourceError(
                "no camera could be opened: " + "; ".join("{} ({})".format(c["device_id"], why) for c, why in failed)
            )
    except BaseException:
        for camera in cameras or ():
            camera.close()
        _close_models(classifier, detector, factories.borrowed)
        raise
    return Assembly(config, classifier, detector, cameras, failed, factories.borrowed)


def start_camera(camera, classifier):
    """Start the camera's publisher (connects in the background) and announce it to Home Assistant."""
    camera.publisher.start()
    config = camera.config
    if config.get("homeassistant"):
        from edge.events.homeassistant import announce

        announce(
            camera.publisher,
            camera.device_id,
            config["topic_prefix"],
            config["homeassistant_prefix"],
            classifier.model_id,
            state_interval=camera.lifecycle.state_interval if camera.lifecycle is not None else None,
            view_url=camera.view_url(),
        )


def run(assembly, stop=None):
    """Run the assembled agent until its sources end or ``stop`` is set; the run summary.

    One camera: ``edge.agent.loop.run_agent`` (the summary as it always was). Several:
    ``edge.agent.cameras.run_cameras``, with a ``cameras`` entry per device id."""
    classifier, config = assembly.classifier, assembly.config
    for camera in assembly.cameras:
        log.info(
            "agent %s: source %s, model %s on %s, publisher %r",
            camera.device_id,
            camera.config["source"],
            classifier.model_id,
            classifier.runtime,
            camera.publisher,
        )
    for camera in assembly.cameras:
        start_camera(camera, classifier)
    if not assembly.multi:
        from edge.agent.loop import run_agent

        camera = assembly.cameras[0]
        summary = run_agent(camera, classifier, stop=stop, stats_interval=config["stats_interval"])
        summary.update(camera.summary_extra())
        return summary
    from edge.agent.cameras import run_cameras

    return run_cameras(assembly.cameras, classifier, stop=stop, failed=assembly.failed)


def serve_assembled(config, factories, stop=None):
    """:func:`assemble`, :func:`run`, and close everything (also after an error); the run summary."""
    assembly = assemble(config, factories)
    try:
        return run(assembly, stop)
    finally:
        assembly.close()
