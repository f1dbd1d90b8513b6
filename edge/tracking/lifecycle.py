"""Face lifecycle and device state, from the tracker's live tracks (Python 3.6 compatible).

For each track, on ``<prefix>/<device_id>/tracks`` (``schema/track.schema.json``):

* ``new`` once the face has been seen in ``confirm_frames`` frames (a detection that lasts fewer
  frames says nothing);
* ``update`` when its stable emotion (the tracker's hysteresis label, :mod:`edge.tracking.track`) changes;
* ``end`` when it is gone: the tracker dropped it after ``max_missed`` frames unseen (reason
  ``gone``), or the agent stopped (reason ``stopped``). A face missed for fewer frames coasts: it
  keeps its id and nothing is announced again.

``before``/``after`` are the track's state at its previous message and now (for ``new`` both are
the current state), as in Frigate's events. The state holds the duration (first to last frame
seen: from the frame numbers and the frame rate for video files, from the capture times for
cameras), the frames seen, the dominant emotion and the share of each stable emotion over the
frames seen.

The device state (retained, ``<prefix>/<device_id>/state``): the faces in view now (confirmed
tracks seen in one of the last ``IN_VIEW_FRAMES`` frames: a face the detector misses for a frame or
two stays in view, a face that left or a track the tracker replaced by a new one does not), their
dominant emotion and counts, the confirmed tracks that coast (unseen for longer, still kept), and
frames per second: absent until measured (at least ``FPS_FIRST_SPAN`` s of frames), then rounded
to 0.1 and changed at most every ``fps_interval`` s, so that a recorder (Home Assistant's) gets a
row a minute for it, not one per message. Sent when it changes (at most every
``state_min_interval`` s) and every ``state_interval`` s; the publisher keeps only the newest
value (it describes the present). Home Assistant's sensors read it.
"""

import binascii
import collections
import os
import time
from typing import Any, Deque, Dict

from edge.events.payloads import face_entry, format_timestamp, state_payload, track_message

DEFAULT_CONFIRM_FRAMES = 3
FPS_WINDOW = 5.0  # seconds of frames the state's fps is measured over
FPS_FIRST_SPAN = 1.0  # seconds of frames before the state has an fps
DEFAULT_FPS_INTERVAL = 60.0  # seconds between changes of the state's fps
IN_VIEW_FRAMES = 3  # a confirmed face seen in one of the last this many frames is in view


def new_run_id():
    """8 random hex digits: with the tracker's number, a track id unique across agent runs."""
    return binascii.hexlify(os.urandom(4)).decode("ascii")


class _Record(object):
    __slots__ = (
        "uid",
        "track",
        "first_time",
        "last_time",
        "counts",
        "changes",
        "confirmed",
        "number",
        "announced_label",
        "last_state",
    )

    def __init__(self, uid, track, timestamp, n_labels):
        self.uid = uid
        self.track = track
        self.first_time = timestamp
        self.last_time = timestamp
        self.counts = [0] * n_labels
        self.changes = 0
        self.confirmed = False
        self.number = 0
        self.announced_label = None
        self.last_state = None


class TrackLifecycle(object):
    """Turns the tracker's live tracks into track messages and the device state.

    Call :meth:`observe` after every tracker update and :meth:`finish` when the loop ends.
    ``labels``: the model's label order; ``fps``: the frame rate of a video file (durations from
    frame numbers) or None (from capture times); ``track_events``: publish track messages;
    ``state``: publish the device state.
    """

    def __init__(
        self,
        device_id,
        labels,
        model_id="",
        model_version="",
        source=None,
        confirm_frames=DEFAULT_CONFIRM_FRAMES,
        fps=None,
        track_events=True,
        state=True,
        state_interval=10.0,
        state_min_interval=0.5,
        clock=time.monotonic,
        run_id=None,
        fps_interval=DEFAULT_FPS_INTERVAL,
    ):
        if int(confirm_frames) < 1:
            raise ValueError("confirm_frames must be >= 1, got {}".format(confirm_frames))
        self.device_id = device_id
        self.labels = list(labels)
        self.model = (str(model_id), str(model_version))
        self.source = source
        self.confirm_frames = int(confirm_frames)
        self.fps = float(fps) if fps else None
        self.track_events = bool(track_events)
        self.state = bool(state)
        self.state_interval = float(state_interval) if state_interval and state_interval > 0 else 10.0
        self.state_min_interval = float(state_min_interval)
        self.fps_interval = float(fps_interval)
        self.clock = clock
        self.run_id = run_id or new_run_id()
        self.records = collections.OrderedDict()  # track_id -> _Record, live tracks only
        self.counts = {"new": 0, "update": 0, "end": 0, "state": 0}
        self._frame: Any = None  # the agent's Frame being handled (None before the first)
        self._times: Deque[float] = collections.deque()
        self._state_key = None
        self._state_sent_at = None
        self._fps = None  # (value, when) of the state's fps: None until measured

    # -- the loop's calls --

    def observe(self, tracks, frame, publisher):
        """``tracks``: every live track after this frame's update (seen or coasting); ``frame``:
        the frame (index, timestamp)."""
        self._frame = frame
        now = self.clock()
        self._times.append(now)
        while len(self._times) > 2 and now - self._times[0] > FPS_WINDOW:
            self._times.popleft()
        live = set()
        for track in tracks:
            live.add(track.track_id)
            record = self.records.get(track.track_id)
            if record is None:
                record = _Record("{}-{}".format(self.run_id, track.track_id), track, frame.timestamp, len(self.labels))
                self.records[track.track_id] = record
            record.track = track
            if track.missed == 0 and track.last_frame == frame.index:  # seen in this frame
                record.last_time = frame.timestamp
                record.counts[self._label(track)] += 1
            if not record.confirmed:
                if track.hits >= self.confirm_frames:
                    record.confirmed = True
                    record.announced_label = self._label(track)
                    self._send(publisher, "new", record)
            elif self._label(track) != record.announced_label:
                record.announced_label = self._label(track)
                record.changes += 1
                self._send(publisher, "update", record)
        for track_id in [k for k in self.records if k not in live]:
            record = self.records.pop(track_id)
            if record.confirmed:
                self._send(publisher, "end", record, reason="gone")
        self._maybe_state(publisher, now)

    def finish(self, publisher):
        """The loop ended: ``end`` (reason ``stopped``) for every confirmed track, and the state
        with no faces."""
        if self._frame is None:
            return
        for track_id in list(self.records):
            record = self.records.pop(track_id)
            if record.confirmed:
                self._send(publisher, "end", record, reason="stopped")
        self._maybe_state(publisher, self.clock(), force=True)

    # -- messages --

    def _label(self, track):
        index = track.label
        return int(track.scores.argmax()) if index is None else int(index)

    def track_state(self, record, ended=False):
        """The ``before``/``after`` object of a track (see ``schema/track.schema.json``)."""
        track = record.track
        labels = self.labels
        face = face_entry(track.track_id, track.box, labels, track.scores, emotion=self._label(track))
        seen = max(1, sum(record.counts))
        shares = dict((labels[i], round(c / float(seen), 4)) for i, c in enumerate(record.counts) if c)
        dominant = max(range(len(labels)), key=lambda i: (record.counts[i], -i))
        first, last = track.first_frame, track.last_frame
        if self.fps:
            duration = (last - first) / self.fps
        else:
            duration = max(0.0, float(record.last_time) - float(record.first_time))
        state = {
            "id": record.uid,
            "track_id": face["track_id"],
            "box": face["box"],
            "emotion": face["emotion"],
            "confidence": face["confidence"],
            "top_emotion": face["top_emotion"],
            "scores": face["scores"],
            "start_time": format_timestamp(record.first_time),
            "end_time": format_timestamp(record.last_time) if ended else None,
            "first_frame": int(first),
            "last_frame": int(last),
            "frames": int(track.hits),
            "missed": int(track.missed),
            "duration": round(duration, 3),
            "dominant_emotion": labels[dominant],
            "emotion_shares": shares,
            "emotion_changes": record.changes,
        }
        return state

    def _send(self, publisher, kind, record, reason=None):
        after = self.track_state(record, ended=(kind == "end"))
        before = after if record.last_state is None else record.last_state
        record.number += 1
        record.last_state = after
        self.counts[kind] += 1
        if not self.track_events:
            return
        frame = self._frame
        message = track_message(
            kind,
            self.device_id,
            frame.index,
            before,
            after,
            self.model[0],
            self.model[1],
            timestamp=frame.timestamp,
            source=self.source,
            reason=reason,
            number=record.number,
        )
        publisher.publish_track(message)

    # -- device state --

    def _in_view_records(self):
        return [r for r in self.records.values() if r.confirmed and r.track.missed < IN_VIEW_FRAMES]

    def in_view(self):
        """The stable emotions of the faces in view now (see the module doc): ``{label: count}``."""
        counts: Dict[str, int] = {}
        for record in self._in_view_records():
            label = self.labels[self._label(record.track)]
            counts[label] = counts.get(label, 0) + 1
        return counts

    def coasting(self):
        """Confirmed tracks the tracker keeps that are not in view (unseen for ``IN_VIEW_FRAMES`` frames or more)."""
        return sum(1 for r in self.records.values() if r.confirmed and r.track.missed >= IN_VIEW_FRAMES)

    def fps_now(self):
        """Frames per second over the last ``FPS_WINDOW`` s; None before ``FPS_FIRST_SPAN`` s of frames."""
        times = self._times
        if len(times) < 2 or times[-1] - times[0] < FPS_FIRST_SPAN:
            return None
        return (len(times) - 1) / (times[-1] - times[0])

    def _state_fps(self, now):
        """The state's fps: the measured value rounded to 0.1, changed at most every ``fps_interval`` s."""
        if self._fps is None or now - self._fps[1] >= self.fps_interval:
            measured = self.fps_now()
            if measured is not None:
                self._fps = (round(measured, 1), now)
        return None if self._fps is None else self._fps[0]

    def _maybe_state(self, publisher, now, force=False):
        if not self.state:
            return
        emotions = {} if force else self.in_view()
        coasting = 0 if force else self.coasting()
        fps = self._state_fps(now)
        key = (tuple(sorted(emotions.items())), coasting, fps)
        last = self._state_sent_at
        changed = key != self._state_key
        due = last is None or now - last >= self.state_interval
        if not (force or due or (changed and now - last >= self.state_min_interval)):
            return
        ids = [] if force else [r.uid for r in self._in_view_records()]
        payload = state_payload(
            self.device_id,
            sum(emotions.values()),
            emotions,
            fps,
            ids,
            timestamp=self._frame.timestamp if self._frame is not None else None,
            coasting=coasting,
        )
        publisher.publish_state(payload)
        self.counts["state"] += 1
        self._state_key = key
        self._state_sent_at = now


def lifecycle_from_config(config, classifier, source):
    """The lifecycle part the config asks for (``track_events``, or ``homeassistant`` which needs the
    state), or None."""
    if not (config.get("track_events") or config.get("homeassistant")):
        return None
    from edge.agent.loop import model_version_of

    live = source.live
    return TrackLifecycle(
        config["device_id"],
        classifier.labels,
        classifier.model_id,
        model_version_of(classifier.meta.get("model", {})),
        source=str(source.uri or "") or None,
        confirm_frames=config.get("confirm_frames", DEFAULT_CONFIRM_FRAMES),
        fps=None if live else source.fps,
        track_events=bool(config.get("track_events")),
        state_interval=config.get("stats_interval") or 10.0,
    )


def format_track_line(message):
    """One human line for a track message (what ``fer-edge run`` prints)."""
    after, before = message.get("after", {}), message.get("before", {})
    head = "{} {} track {} {}".format(
        message.get("timestamp", "?"),
        message.get("device_id", "?"),
        after.get("track_id", "?"),
        message.get("type", "?"),
    )
    if message.get("type") == "end":
        shares = sorted(after.get("emotion_shares", {}).items(), key=lambda kv: -kv[1])
        return "{} after {:.1f} s, {} frames: {} ({})".format(
            head,
            float(after.get("duration", 0.0)),
            after.get("frames", "?"),
            ", ".join("{} {:.0f}%".format(k, 100.0 * v) for k, v in shares) or "-",
            message.get("reason", "?"),
        )
    line = "{} {} {:.2f}".format(head, after.get("emotion", "?"), float(after.get("confidence", 0.0)))
    if message.get("type") == "update":
        line += " (was {})".format(before.get("emotion", "?"))
    return line
