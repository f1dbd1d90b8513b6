"""IoU tracker with per-track temporal smoothing and a hysteresis label (Python 3.6 compatible).

Faces matched across frames by box overlap keep a stable ``track_id``. A track survives
``max_missed`` frames without a detection (it "coasts" on its last box), so a face the detector
misses for a frame or a few keeps its id when it is found again.

Each track's scores are an exponential moving average: ``s = alpha * s_prev + (1 - alpha) * p``;
``smoothing=0`` turns it off (the raw model output is reported).

``track.label`` is the track's *stable* emotion (an index into the model's labels), changed with
hysteresis: another label replaces it only after it has had the highest smoothed score and led
the stable label's score by at least ``hysteresis_margin`` in ``hysteresis_frames`` consecutive
frames in which the face was seen. On an ambiguous face (two emotions near 0.3 each) the top
label flips from frame to frame; the stable label does not. ``hysteresis_margin=0`` and
``hysteresis_frames=1`` make it the top label of every frame.
"""

import numpy as np

DEFAULT_HYSTERESIS_MARGIN = 0.1
DEFAULT_HYSTERESIS_FRAMES = 3


def iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / float(union) if union > 0 else 0.0


class Track(object):
    """One tracked face. ``scores``: smoothed probabilities; ``raw``: this frame's; ``label``: the
    stable emotion index (hysteresis); ``hits``: frames seen; ``missed``: frames unseen in a row;
    ``first_frame``/``last_frame``: first and latest frame seen."""

    __slots__ = (
        "track_id",
        "box",
        "scores",
        "raw",
        "first_frame",
        "last_frame",
        "hits",
        "missed",
        "label",
        "candidate",
        "candidate_frames",
    )

    def __init__(self, track_id, box, probs, frame):
        self.track_id = track_id
        self.box = tuple(int(v) for v in box)
        self.scores = np.asarray(probs, dtype=np.float32)
        self.raw = self.scores
        self.first_frame = frame
        self.last_frame = frame
        self.hits = 1
        self.missed = 0
        self.label = int(self.scores.argmax())
        self.candidate = None
        self.candidate_frames = 0

    @property
    def top(self):
        """Index of the highest smoothed score in the latest frame seen."""
        return int(self.scores.argmax())


def update_label(track, margin, frames):
    """Apply the hysteresis rule to ``track.label`` after its scores changed (see the module doc)."""
    top = track.top
    scores = track.scores
    if top == track.label or float(scores[top]) - float(scores[track.label]) < margin:
        track.candidate, track.candidate_frames = None, 0
        return False
    if track.candidate == top:
        track.candidate_frames += 1
    else:
        track.candidate, track.candidate_frames = top, 1
    if track.candidate_frames >= frames:
        track.label = top
        track.candidate, track.candidate_frames = None, 0
        return True
    return False


class IouTracker(object):
    def __init__(
        self,
        iou_threshold=0.3,
        max_missed=15,
        smoothing=0.6,
        hysteresis_margin=DEFAULT_HYSTERESIS_MARGIN,
        hysteresis_frames=DEFAULT_HYSTERESIS_FRAMES,
    ):
        if not 0.0 <= smoothing < 1.0:
            raise ValueError("smoothing must be in [0, 1), got {}".format(smoothing))
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError("iou_threshold must be in (0, 1], got {}".format(iou_threshold))
        if not 0.0 <= hysteresis_margin <= 1.0:
            raise ValueError("hysteresis_margin must be in [0, 1], got {}".format(hysteresis_margin))
        if int(hysteresis_frames) < 1:
            raise ValueError("hysteresis_frames must be >= 1, got {}".format(hysteresis_frames))
        self.iou_threshold = iou_threshold
        self.max_missed = int(max_missed)
        self.smoothing = float(smoothing)
        self.hysteresis_margin = float(hysteresis_margin)
        self.hysteresis_frames = int(hysteresis_frames)
        self.tracks = []  # every live track: seen in this frame or coasting (missed <= max_missed)
        self.next_id = 1

    def update(self, boxes, probs, frame):
        """Match this frame's faces to tracks; returns the tracks seen in this frame, in box order.
        ``self.tracks`` then holds every live track, the coasting ones included."""
        pairs = sorted(
            ((iou(t.box, b), ti, bi) for ti, t in enumerate(self.tracks) for bi, b in enumerate(boxes)), reverse=True
        )
        track_for_box = {}
        used = set()
        for overlap, ti, bi in pairs:
            if overlap < self.iou_threshold:
                break
            if ti in used or bi in track_for_box:
                continue
            used.add(ti)
            track_for_box[bi] = self.tracks[ti]
        seen = []
        for bi, box in enumerate(boxes):
            track = track_for_box.get(bi)
            p = np.asarray(probs[bi], dtype=np.float32)
            if track is None:
                track = Track(self.next_id, box, p, frame)
                self.next_id += 1
                self.tracks.append(track)
            else:
                a = self.smoothing
                track.scores = a * track.scores + (1.0 - a) * p
                track.raw = p
                track.box = tuple(int(v) for v in box)
                track.last_frame = frame
                track.hits += 1
                track.missed = 0
                update_label(track, self.hysteresis_margin, self.hysteresis_frames)
            seen.append(track)
        seen_ids = set(id(t) for t in seen)
        for track in self.tracks:
            if id(track) not in seen_ids:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return seen
