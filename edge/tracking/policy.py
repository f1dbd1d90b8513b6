"""When the agent publishes: every processed frame, on a track's emotion change, or per interval.

A track's emotion here is its stable label (``track.label``, the tracker's hysteresis rule, see
:mod:`edge.tracking.track`), so ``on-change`` does not publish the flips of an ambiguous face. State is kept
for every live track, the coasting ones included (``live``): a face the detector misses for a few
frames keeps its id and is not announced again when it is found.
"""

POLICIES = ("every-frame", "on-change", "interval")


def stable_label(track, labels):
    """The track's stable emotion label (its top score's label for a track without one)."""
    index = track.label
    if index is None:
        index = int(track.scores.argmax())
    return labels[int(index)]


class PublishPolicy(object):
    """``select(tracks, labels, now, live=None)`` -> the tracks to put in an event, or None for no event.

    every-frame: one event per processed frame, with every face (an empty list when none).
    on-change:   an event with the tracks that are new or whose stable emotion changed.
    interval:    an event with the tracks not published for ``interval`` seconds.

    ``tracks``: the tracks seen in this frame; ``live``: every track the tracker still keeps
    (default: ``tracks``); what is remembered about a track is forgotten when it is no longer live.
    """

    def __init__(self, mode="every-frame", interval=5.0):
        if mode not in POLICIES:
            raise ValueError("publish policy {!r}: choose from {}".format(mode, ", ".join(POLICIES)))
        if mode == "interval" and not interval > 0:
            raise ValueError("publish interval must be positive, got {}".format(interval))
        self.mode = mode
        self.interval = float(interval)
        self.last_emotion = {}
        self.last_time = {}

    def select(self, tracks, labels, now, live=None):
        if self.mode == "every-frame":
            return list(tracks)
        chosen = []
        for track in tracks:
            if self.mode == "on-change":
                emotion = stable_label(track, labels)
                if self.last_emotion.get(track.track_id) != emotion:
                    chosen.append(track)
                self.last_emotion[track.track_id] = emotion
            elif now - self.last_time.get(track.track_id, float("-inf")) >= self.interval:
                chosen.append(track)
                self.last_time[track.track_id] = now
        keep = set(t.track_id for t in (tracks if live is None else live))
        keep.update(t.track_id for t in tracks)
        for table in (self.last_emotion, self.last_time):
            for gone in [k for k in table if k not in keep]:
                del table[gone]
        return chosen or None
