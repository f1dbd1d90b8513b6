"""When the agent publishes: every processed frame, on a track's emotion change, or per interval."""

POLICIES = ("every-frame", "on-change", "interval")


class PublishPolicy(object):
    """``select(tracks, now)`` -> the tracks to put in an event, or None for no event this frame.

    every-frame: one event per processed frame, with every face (an empty list when none).
    on-change:   an event with the tracks that are new or whose top emotion changed.
    interval:    an event with the tracks not published for ``interval`` seconds.
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

    def select(self, tracks, labels, now):
        if self.mode == "every-frame":
            return list(tracks)
        chosen = []
        for track in tracks:
            emotion = labels[int(track.scores.argmax())]
            if self.mode == "on-change":
                if self.last_emotion.get(track.track_id) != emotion:
                    chosen.append(track)
                self.last_emotion[track.track_id] = emotion
            elif now - self.last_time.get(track.track_id, float("-inf")) >= self.interval:
                chosen.append(track)
                self.last_time[track.track_id] = now
        live = set(t.track_id for t in tracks)
        for table in (self.last_emotion, self.last_time):
            for gone in [k for k in table if k not in live]:
                del table[gone]
        return chosen or None
