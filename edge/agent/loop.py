"""The agent loop: a short function of injected parts (Python 3.6 compatible).

    source -> detector -> classifier (preprocess + backend) -> tracker -> policy -> publisher

Every part is passed in, so the host agent, the Jetson agent and the DeepLens Lambda run this
same loop with their own sources, backends and publishers: ``edge.agent.assembly`` builds each
camera's parts (its ``Camera``: source, detector, tracker, policy, publisher, frame sinks, face
lifecycle, device id) and the classifier. :class:`CameraLoop` holds one camera's per-frame steps;
:func:`run_agent` runs them for one camera, ``edge.agent.cameras`` for several cameras sharing
one detector and one classifier.
"""

import logging
import threading
import time

from edge.agent.metrics import StageMetrics
from edge.detect.base import DetectorConfigError
from edge.detect.factory import crop
from edge.events.payloads import face_entry, make_event, stats_payload

log = logging.getLogger(__name__)


class AgentError(RuntimeError):
    """The loop cannot go on (e.g. every frame fails)."""


def model_version_of(model):
    """The model's version for events: its commit (training, else export), else its creation time."""
    for key in ("version", "source_commit", "export_commit", "created"):
        value = model.get(key)
        if value and value != "unknown":
            return str(value)
    return ""


def faces_of(tracks, labels):
    """Event face entries of tracks (smoothed scores; ``emotion`` the stable label, edge.tracking.track)."""
    return [face_entry(t.track_id, t.box, labels, t.scores, emotion=t.label) for t in tracks]


class CameraLoop(object):
    """One camera's steps of the loop, around classification (which the caller runs: per frame in
    :func:`run_agent`, batched across cameras in :mod:`edge.agent.cameras`).

    ``camera``: the camera's parts (``edge.agent.assembly.Camera``). ``read()`` a frame;
    ``detect(frame)`` its faces and ``crops(frame, detections)`` the classifier's input; then
    ``deliver(frame, detections, probs)`` (tracker, lifecycle, policy, event, sinks, stats) or
    ``failed(frame, exc)`` (logged, counted, AgentError after ``max_consecutive_errors`` in a
    row); ``finish()`` ends the lifecycle and returns the summary. ``name``: prefix of log lines
    ("" for a one-camera agent).
    """

    def __init__(self, camera, classifier, stats_interval=10.0, max_consecutive_errors=50, clock=time.time, name=""):
        self.source, self.detector, self.tracker = camera.source, camera.detector, camera.tracker
        self.publisher, self.policy = camera.publisher, camera.policy
        self.device_id = camera.device_id
        self.stats_interval = stats_interval
        self.sinks = camera.sinks
        self.lifecycle = camera.lifecycle
        self.max_consecutive_errors = max_consecutive_errors
        self.clock = clock
        self.name = name
        self.labels = list(classifier.labels)
        self.model_id = classifier.model_id
        self.model_version = model_version_of(classifier.meta.get("model", {}))
        self.metrics = StageMetrics()
        self.errors = self.consecutive = self.events = 0

    def read(self, **options):
        """The source's next frame (None: it ended), timed as the capture stage."""
        with self.metrics.stage("capture"):
            return self.source.read(**options)

    def detect(self, frame):
        with self.metrics.stage("detect"):
            return self.detector.detect(frame.image)

    @staticmethod
    def crops(frame, detections):
        return [crop(frame.image, d) for d in detections]

    def failed(self, frame, exc):
        """A frame whose detection or inference failed: logged, counted, skipped."""
        self.errors += 1
        self.consecutive += 1
        log.error("%sframe %s: %s: %s (skipped)", self.name, frame.index, type(exc).__name__, exc)
        if self.consecutive >= self.max_consecutive_errors:
            raise AgentError("{}{} frames in a row failed; last error: {}".format(self.name, self.consecutive, exc))

    def deliver(self, frame, detections, probs):
        """Everything after the classifier for one frame: track, lifecycle, policy, event, sinks, stats."""
        self.consecutive = 0
        labels, publisher = self.labels, self.publisher
        tracks = self.tracker.update([d.box for d in detections], probs, frame.index)
        if self.lifecycle is not None:
            self.lifecycle.observe(self.tracker.tracks, frame, publisher)
        chosen = self.policy.select(tracks, labels, self.clock(), live=self.tracker.tracks)
        if chosen is not None:
            with self.metrics.stage("publish"):
                publisher.publish_event(
                    make_event(
                        self.device_id,
                        frame.index,
                        faces_of(chosen, labels),
                        self.model_id,
                        self.model_version,
                        timestamp=frame.timestamp,
                        source=str(self.source.uri or ""),
                    )
                )
            self.events += 1
        if self.sinks:
            faces = faces_of(tracks, labels)
            for sink in self.sinks:
                sink.write(frame, faces)
        self.metrics.frame_done(len(detections))
        if self.metrics.due(self.stats_interval):
            _report(publisher, self.device_id, self.metrics, self.source, self.errors, self.name)

    def finish(self):
        """End the lifecycle (every live track ends), publish the last stats; the summary dict
        (with ``ended_early`` when the source says it ended before its end; a source that gave no
        frame is logged as having processed nothing)."""
        if self.lifecycle is not None:
            self.lifecycle.finish(self.publisher)
        summary = {
            "frames": self.metrics.total_frames,
            "faces": self.metrics.total_faces,
            "events": self.events,
            "errors": self.errors,
            "corrupt_frames": self.source.corrupt,
        }
        ended_early = self.source.ended_early
        if ended_early:
            summary["ended_early"] = ended_early
        if not summary["frames"]:
            log.warning(
                "%sprocessed nothing: source %s gave no frame%s",
                self.name,
                self.source.uri,
                " ({} unreadable, skipped)".format(summary["corrupt_frames"]) if summary["corrupt_frames"] else "",
            )
        _report(self.publisher, self.device_id, self.metrics, self.source, self.errors, self.name)
        return summary


def run_agent(camera, classifier, stop=None, stats_interval=10.0, max_consecutive_errors=50, clock=time.time):
    """Process ``camera``'s frames until its source ends or ``stop`` is set; returns a summary dict.

    ``camera``: the parts ``edge.agent.assembly`` built (``Camera``): source, detector, tracker,
    publish policy, publisher, frame sinks (``edge.view.annotate.FrameSink``: the annotated writer,
    the live view; each handed every processed frame and its faces), the face lifecycle
    (``edge.tracking.lifecycle.TrackLifecycle``: track new/update/end messages and the retained
    device state, shown every live track after the tracker; or None) and the device id.
    A frame whose detection or inference fails is logged, counted and skipped; the loop only
    gives up (AgentError) after ``max_consecutive_errors`` failures in a row. Detector options that do
    not fit the frames (``edge.detect.base.DetectorConfigError``) end it at once.
    """
    stop = stop or threading.Event()
    loop = CameraLoop(
        camera, classifier, stats_interval=stats_interval, max_consecutive_errors=max_consecutive_errors, clock=clock
    )
    while not stop.is_set():
        frame = loop.read()
        if frame is None:
            break
        try:
            detections = loop.detect(frame)
            with loop.metrics.stage("infer"):
                probs = classifier.predict(loop.crops(frame, detections))
        except DetectorConfigError:  # options that do not fit the frames (min_face, tiles): no frame will do
            raise
        except Exception as exc:  # a corrupt frame or a failing backend must not end the loop
            loop.failed(frame, exc)
            continue
        loop.deliver(frame, detections, probs)
    return loop.finish()


def _report(publisher, device_id, metrics, source, errors, name=""):
    snap = metrics.snapshot()
    extra = {
        "errors": errors,
        "corrupt_frames": source.corrupt,
        "reconnects_source": source.reconnects,
    }
    log.info(
        "%sfps %.1f, frames %d, faces %d, ms/frame %s",
        name,
        snap["fps"],
        snap["frames"],
        snap["faces"],
        " ".join("{} {:.1f}".format(k, v) for k, v in sorted(snap["stage_ms"].items())),
    )
    publisher.publish_stats(
        stats_payload(device_id, snap["fps"], snap["stage_ms"], snap["frames"], snap["faces"], extra)
    )
