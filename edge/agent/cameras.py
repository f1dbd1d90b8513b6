"""Several cameras in one agent: one detector, one classifier, each camera's own parts.

Each round reads one frame from every camera, runs the (shared) detector on each frame, then the
classifier **once** on the faces of all of them, and hands each camera its share of the scores
(``edge.agent.loop.CameraLoop.deliver``: its own tracker, lifecycle, policy, publisher, sinks and
stats). The per-frame steps are the one-camera loop's (:class:`edge.agent.loop.CameraLoop`); only the
batching across cameras is here. The classifier's time for a round is counted in the ``infer``
stage of every camera in it.

Cameras and streams (live sources) are polled: a camera without a new frame is skipped in this
round, so a slow or reconnecting camera (``edge.agent.sources`` reopens it with back-off) does not hold
up the others. File sources give a frame every round until they end. A camera

* whose source ends (a file) is finished on its own: its tracks end, its last stats and its
  offline status go out, its parts are closed; the others go on (state ``ended``);
* whose detector options do not fit its frames (``DetectorConfigError``: ``min_face`` larger than
  the frame, tiles too small for ``min_face``), or whose source raises, or whose frames fail ``max_consecutive_errors`` times in a row, or whose
  publishing step raises, is dropped with an error line naming it and closed (state ``failed``,
  with ``error``); the others go on;
* still running when ``stop`` is set ends with state ``stopped``.

The run ends when ``stop`` is set or no camera is left. Summary: the totals, ``rounds``,
``classifier_calls`` and per device id (``cameras``) that camera's summary and state; cameras
that could not be opened at start (``edge.agent.assembly``) appear there as failed. When every camera
failed, AgentError. Python 3.6 compatible (device code).
"""

import logging
import threading
import time
from typing import Any, Dict

from edge.agent.loop import AgentError, CameraLoop
from edge.detect.base import DetectorConfigError

log = logging.getLogger(__name__)

IDLE_WAIT = 0.01  # seconds to wait when no camera had a new frame in a round
TOTALS = ("frames", "faces", "events", "errors", "corrupt_frames")


class _Running(object):
    """A camera in the loop: its parts (``edge.agent.assembly.Camera``) and its CameraLoop."""

    def __init__(self, camera, classifier, stats_interval, max_consecutive_errors):
        self.camera = camera
        self.loop = CameraLoop(
            camera,
            classifier,
            stats_interval=stats_interval,
            max_consecutive_errors=max_consecutive_errors,
            name="camera {}: ".format(camera.device_id),
        )
        self.pollable = _pollable(camera.source)
        self.summary = None


def _pollable(source):
    from edge.agent.sources import LiveSource

    return isinstance(source, LiveSource)


_NO_FRAME = object()


def _next_frame(running):
    """The camera's next frame, None when its source ended, or _NO_FRAME (a live camera without a new one)."""
    if not running.pollable:
        return running.loop.read()
    frame = running.loop.read(timeout=0)
    if frame is None and not running.camera.source.stopping.is_set():
        return _NO_FRAME
    return frame


def run_cameras(
    cameras, classifier, stop=None, failed=(), stats_interval=None, max_consecutive_errors=50, idle_wait=IDLE_WAIT
):
    """Run ``cameras`` (``edge.agent.assembly.Camera``, publishers started) until every source ended or
    ``stop`` is set; the run summary (see the module doc). ``failed``: [(camera config, error)]
    of cameras left out at start."""
    stop = stop or threading.Event()
    if stats_interval is None:
        stats_interval = cameras[0].config["stats_interval"] if cameras else 10.0
    active = [_Running(c, classifier, stats_interval, max_consecutive_errors) for c in cameras]
    done = []
    counts = {"rounds": 0, "classifier_calls": 0}

    def finish(running, state, error=None):
        active.remove(running)
        done.append(running)
        camera = running.camera
        camera.state, camera.error = state, error
        try:
            running.summary = running.loop.finish()
        except Exception as exc:  # its last stats could not go out: still close it
            log.error("camera %s: finishing: %s: %s", camera.device_id, type(exc).__name__, exc)
            running.summary = {
                "frames": running.loop.metrics.total_frames,
                "faces": running.loop.metrics.total_faces,
                "events": running.loop.events,
                "errors": running.loop.errors,
                "corrupt_frames": camera.source.corrupt,
            }
        running.summary.update(camera.summary_extra())
        if state == "failed":
            log.error(
                "camera %s dropped after %d frames: %s; the other cameras go on",
                camera.device_id,
                running.summary["frames"],
                error,
            )
        elif state == "ended":
            log.info(
                "camera %s: source %s ended after %d frames",
                camera.device_id,
                camera.config["source"],
                running.summary["frames"],
            )
        camera.close()

    def fail(running, what, exc):
        finish(running, "failed", "{}: {}: {}".format(what, type(exc).__name__, exc))

    while active and not stop.is_set():
        batch = []
        for running in list(active):
            try:
                frame = _next_frame(running)
            except Exception as exc:  # a source that breaks must not stop the other cameras
                fail(running, "source", exc)
                continue
            if frame is _NO_FRAME:
                continue
            if frame is None:
                finish(running, "ended")
                continue
            try:
                detections = running.loop.detect(frame)
                crops = running.loop.crops(frame, detections)
            except DetectorConfigError as exc:  # options that do not fit this camera's frames: no frame will do
                fail(running, "config", exc)
                continue
            except Exception as exc:
                _frame_failed(running, frame, exc, fail)
                continue
            batch.append((running, frame, detections, crops))
        if not batch:
            if active:
                stop.wait(idle_wait)
            continue
        counts["rounds"] += 1
        faces = [c for _, _, _, crops in batch for c in crops]
        started = time.monotonic()
        try:
            probs = classifier.predict(faces)
        except Exception as exc:  # a failing batch fails the frame of every camera in it
            for running, frame, _, _ in batch:
                _frame_failed(running, frame, exc, fail)
            continue
        finally:
            counts["classifier_calls"] += 1
            seconds = time.monotonic() - started
        offset = 0
        for running, frame, detections, _ in batch:
            share = probs[offset : offset + len(detections)]
            offset += len(detections)
            running.loop.metrics.add("infer", seconds)
            try:
                running.loop.deliver(frame, detections, share)
            except Exception as exc:
                fail(running, "publishing", exc)
    for running in list(active):
        finish(running, "stopped")
    return _summary(done, failed, counts)


def _frame_failed(running, frame, exc, fail):
    try:
        running.loop.failed(frame, exc)
    except AgentError as err:
        fail(running, "frames", err)


def _summary(done, failed, counts):
    per_camera = {}
    for running in done:
        entry = dict(running.summary)
        entry["state"] = running.camera.state
        entry["source"] = str(running.camera.config["source"])
        if running.camera.error:
            entry["error"] = running.camera.error
        per_camera[running.camera.device_id] = entry
    for config, error in failed:
        per_camera[config["device_id"]] = {
            "state": "failed",
            "source": str(config["source"]),
            "error": error,
            "frames": 0,
            "faces": 0,
            "events": 0,
            "errors": 0,
            "corrupt_frames": 0,
        }
    summary: Dict[str, Any] = dict((key, sum(int(e.get(key, 0)) for e in per_camera.values())) for key in TOTALS)
    summary.update(counts)
    summary["cameras"] = per_camera
    if per_camera and all(e["state"] == "failed" for e in per_camera.values()):
        raise AgentError(
            "every camera failed: "
            + "; ".join("{}: {}".format(name, e.get("error")) for name, e in sorted(per_camera.items()))
        )
    return summary
