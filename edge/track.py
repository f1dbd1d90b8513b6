"""IoU tracker with per-track temporal smoothing of emotion scores (Python 3.6 compatible).

Faces matched across frames by box overlap keep a stable ``track_id``. Each track's scores are
an exponential moving average: ``s = alpha * s_prev + (1 - alpha) * p``; ``smoothing=0`` turns
it off (the raw model output is reported).
"""

import numpy as np


def iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / float(union) if union > 0 else 0.0


class Track(object):
    __slots__ = ("track_id", "box", "scores", "raw", "last_frame", "hits", "missed")

    def __init__(self, track_id, box, probs, frame):
        self.track_id = track_id
        self.box = tuple(int(v) for v in box)
        self.scores = np.asarray(probs, dtype=np.float32)
        self.raw = self.scores
        self.last_frame = frame
        self.hits = 1
        self.missed = 0


class IouTracker(object):
    def __init__(self, iou_threshold=0.3, max_missed=15, smoothing=0.6):
        if not 0.0 <= smoothing < 1.0:
            raise ValueError("smoothing must be in [0, 1), got {}".format(smoothing))
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError("iou_threshold must be in (0, 1], got {}".format(iou_threshold))
        self.iou_threshold = iou_threshold
        self.max_missed = int(max_missed)
        self.smoothing = float(smoothing)
        self.tracks = []
        self.next_id = 1

    def update(self, boxes, probs, frame):
        """Match this frame's faces to tracks; returns the tracks seen in this frame, in box order."""
        pairs = sorted(((iou(t.box, b), ti, bi) for ti, t in enumerate(self.tracks) for bi, b in enumerate(boxes)),
                       reverse=True)
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
            seen.append(track)
        seen_ids = set(id(t) for t in seen)
        for track in self.tracks:
            if id(track) not in seen_ids:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return seen
