"""The agent loop: a short function of injected parts (Python 3.6 compatible).

    source -> detector -> classifier (preprocess + backend) -> tracker -> policy -> publisher

Every part is passed in, so the host agent, the Jetson agent and the DeepLens Lambda run this
same loop with their own sources, backends and publishers.
"""

import logging
import threading
import time

from .detect import crop
from .events import face_entry, make_event, stats_payload
from .metrics import StageMetrics

log = logging.getLogger("fer_edge.agent")


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
    """Event face entries of tracks (smoothed scores; ``emotion`` the stable label, edge.track)."""
    return [face_entry(t.track_id, t.box, labels, t.scores, emotion=getattr(t, "label", None)) for t in tracks]


def run_agent(source, detector, classifier, tracker, publisher, policy, device_id, stop=None,
              stats_interval=10.0, annotator=None, max_consecutive_errors=50, clock=time.time, sinks=(),
              lifecycle=None):
    """Process frames until the source ends or ``stop`` is set; returns a summary dict.

    A frame whose detection or inference fails is logged, counted and skipped; the loop only
    gives up (AgentError) after ``max_consecutive_errors`` failures in a row.
    ``sinks``: frame sinks (``edge.annotate.FrameSink``: the annotated writer, the live view),
    each handed every processed frame and its faces; ``annotator`` is one more sink (kept for
    callers that pass one).
    ``lifecycle``: the face lifecycle (``edge.lifecycle.TrackLifecycle``: track new/update/end
    messages and the retained device state), shown every live track after the tracker.
    """
    sinks = list(sinks or ()) + ([annotator] if annotator is not None else [])
    stop = stop or threading.Event()
    labels = list(classifier.labels)
    model = classifier.meta.get("model", {})
    model_id, model_version = classifier.model_id, model_version_of(model)
    metrics = StageMetrics()
    errors = consecutive = events = 0
    while not stop.is_set():
        with metrics.stage("capture"):
            frame = source.read()
        if frame is None:
            break
        try:
            with metrics.stage("detect"):
                detections = detector.detect(frame.image)
            with metrics.stage("infer"):
                probs = classifier.predict([crop(frame.image, d) for d in detections])
            consecutive = 0
        except Exception as exc:  # a corrupt frame or a failing backend must not end the loop
            errors += 1
            consecutive += 1
            log.error("frame %s: %s: %s (skipped)", frame.index, type(exc).__name__, exc)
            if consecutive >= max_consecutive_errors:
                raise AgentError("{} frames in a row failed; last error: {}".format(consecutive, exc))
            continue
        tracks = tracker.update([d.box for d in detections], probs, frame.index)
        if lifecycle is not None:
            lifecycle.observe(tracker.tracks, frame, publisher)
        chosen = policy.select(tracks, labels, clock(), live=tracker.tracks)
        if chosen is not None:
            with metrics.stage("publish"):
                publisher.publish_event(make_event(device_id, frame.index, faces_of(chosen, labels), model_id,
                                                   model_version, timestamp=frame.timestamp,
                                                   source=str(getattr(source, "uri", ""))))
            events += 1
        if sinks:
            faces = faces_of(tracks, labels)
            for sink in sinks:
                sink.write(frame, faces)
        metrics.frame_done(len(detections))
        if metrics.due(stats_interval):
            _report(publisher, device_id, metrics, source, errors)
    if lifecycle is not None:
        lifecycle.finish(publisher)
    summary = {"frames": metrics.total_frames, "faces": metrics.total_faces, "events": events,
               "errors": errors, "corrupt_frames": getattr(source, "corrupt", 0)}
    _report(publisher, device_id, metrics, source, errors)
    return summary


def _report(publisher, device_id, metrics, source, errors):
    snap = metrics.snapshot()
    extra = {"errors": errors, "corrupt_frames": getattr(source, "corrupt", 0),
             "reconnects_source": getattr(source, "reconnects", 0)}
    log.info("fps %.1f, frames %d, faces %d, ms/frame %s", snap["fps"], snap["frames"], snap["faces"],
             " ".join("{} {:.1f}".format(k, v) for k, v in sorted(snap["stage_ms"].items())))
    publisher.publish_stats(stats_payload(device_id, snap["fps"], snap["stage_ms"], snap["frames"], snap["faces"],
                                          extra))
