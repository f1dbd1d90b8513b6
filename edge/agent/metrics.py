"""Per-stage timing and FPS of the agent loop, reported periodically (Python 3.6 compatible)."""

import time

STAGES = ("capture", "detect", "infer", "publish")


class _Stage(object):
    def __init__(self, metrics, name):
        self.metrics, self.name = metrics, name

    def __enter__(self):
        self.start = self.metrics.clock()

    def __exit__(self, *exc):
        self.metrics.add(self.name, self.metrics.clock() - self.start)


class StageMetrics(object):
    """Accumulates seconds per stage, frames and faces over a window; ``snapshot`` resets it."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.total_frames = 0
        self.total_faces = 0
        self._reset(clock())

    def _reset(self, now):
        self.window_start = now
        self.frames = 0
        self.faces = 0
        self.seconds = dict((s, 0.0) for s in STAGES)

    def stage(self, name):
        return _Stage(self, name)

    def add(self, name, seconds):
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def frame_done(self, faces):
        self.frames += 1
        self.faces += faces
        self.total_frames += 1
        self.total_faces += faces

    def due(self, interval):
        return interval > 0 and self.clock() - self.window_start >= interval

    def snapshot(self):
        """{'fps', 'frames', 'faces', 'stage_ms': {stage: mean ms per frame}} for the window."""
        now = self.clock()
        elapsed = max(now - self.window_start, 1e-9)
        n = max(self.frames, 1)
        snap = {
            "fps": round(self.frames / elapsed, 2),
            "frames": self.frames,
            "faces": self.faces,
            "stage_ms": dict((s, round(1000.0 * v / n, 2)) for s, v in self.seconds.items()),
        }
        self._reset(now)
        return snap
