"""``fer-edge subscribe --table``: a live table per device (host side of :mod:`edge.delivery.subscribe`).

Per device: online/offline (the retained status, with the reason), the faces in view and their
emotions and the dominant emotion (from the retained state topic; from the latest emotion event
for agents that publish no state), fps, events received, faces announced (track ``new``) and gone
(track ``end``), queued and dropped (from the stats), last seen. Below it, the latest track
``new``/``end`` lines of every device. Redrawn in place with plain ANSI codes on a terminal,
printed as snapshots otherwise. Messages that are not valid for their topic's JSON Schema are
skipped (:class:`fer_edge.subscribe_checks.MessageCheck`: counted, logged once per topic, and the
count shown under the table); every cell is made printable.
"""

import collections
import sys
import threading
import time
from typing import Any, Callable, Sequence, TextIO

from edge.delivery.subscribe import Message, queue_subscription, session_options
from edge.delivery.url import DEFAULT_PREFIX, TOPIC_KINDS

from .subscribe_checks import MessageCheck, printable
from .subscribe_lines import Deduplicator, format_emotion_counts, format_track_lines

RECENT_TRACKS = 8  # track new/end lines kept under the table


class DeviceState(object):
    """What the table knows about one device."""

    def __init__(self, device_id: str):
        self.device_id = device_id
        self.state: str | None = None  # "online" / "offline" / None (no status seen)
        self.reason: str | None = None
        self.faces = 0  # faces in view (the state topic), else in the latest event
        self.emotions: collections.Counter[str] = collections.Counter()  # their emotions
        self.dominant: str | None = None  # the state topic's dominant emotion (None: no state seen)
        self.has_state = False  # a state message was seen: faces/emotions come from it
        self.events = 0
        self.tracks_new = 0
        self.tracks_end = 0
        self.fps: float | None = None
        self.frames: int | None = None
        self.queued: int | None = None
        self.dropped: int | None = None
        self.last_seen: float | None = None  # time.time() of the last message received
        self.last_event: str | None = None  # the latest event's timestamp text


def _count(value):
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class DeviceTable(object):
    """Per-device summary of the messages given to :meth:`update` (thread-safe); ``render``
    makes the text table."""

    COLUMNS = (
        "DEVICE",
        "STATE",
        "FACES",
        "EMOTIONS",
        "DOMINANT",
        "FPS",
        "EVENTS",
        "TRACKS",
        "QUEUED",
        "DROPPED",
        "LAST SEEN",
    )

    def __init__(self, clock: Callable[[], float] = time.time, recent: int = RECENT_TRACKS):
        self.devices: collections.OrderedDict[str, DeviceState] = collections.OrderedDict()
        self.clock = clock
        self.version = 0  # bumps on every change
        self.recent: collections.deque[str] = collections.deque(maxlen=max(0, int(recent)))  # track new/end lines
        self._lock = threading.Lock()
        self._dedupe = Deduplicator()
        self.checks = MessageCheck()  # invalid messages are skipped and counted here

    def update(self, message: Message) -> bool:
        """Fold one :class:`edge.delivery.subscribe.Message` in; returns False for messages it ignores
        (invalid ones are counted in ``checks``)."""
        if not self.checks.accept(message):
            with self._lock:
                self.version += 1  # the count under the table changed
            return False
        data = message.data
        if not isinstance(data, dict) or message.kind is None:
            return False
        device_id = data.get("device_id") or message.device_id
        if not device_id:
            return False
        with self._lock:
            if self._dedupe.seen(message):
                return False
            device = self.devices.get(device_id)
            if device is None:
                device = self.devices[device_id] = DeviceState(device_id)
                self.devices = collections.OrderedDict(sorted(self.devices.items()))
            self._fold(device, message.kind, data)
            if not message.retain:
                device.last_seen = self.clock()
            self.version += 1
        return True

    def _fold(self, device, kind, data):
        if kind == "status":
            device.state = data.get("state")
            device.reason = data.get("reason")
        elif kind == "events":
            device.events += 1
            device.last_event = data.get("timestamp")
            if not device.has_state:
                faces = data.get("faces") or []
                device.faces = len(faces)
                device.emotions = collections.Counter(f.get("emotion", "?") for f in faces)
            if device.state is None:
                device.state = "online"
        elif kind == "state":
            device.has_state = True
            device.faces = _count(data.get("faces")) or 0
            emotions = data.get("emotions")
            device.emotions = collections.Counter(
                dict((k, v) for k, v in emotions.items() if _count(v)) if isinstance(emotions, dict) else {}
            )
            device.dominant = data.get("dominant_emotion")
            if isinstance(data.get("fps"), (int, float)):
                device.fps = data["fps"]
        elif kind == "tracks":
            kind_of_change = data.get("type")
            if kind_of_change == "new":
                device.tracks_new += 1
            elif kind_of_change == "end":
                device.tracks_end += 1
            if kind_of_change in ("new", "end"):
                self.recent.extend(format_track_lines(data, device.device_id))
            if device.state is None:
                device.state = "online"
        elif kind == "stats":
            if isinstance(data.get("fps"), (int, float)):
                device.fps = data["fps"]
            device.frames = data.get("frames")
            delivery = data.get("delivery") or {}
            device.queued = delivery.get("queued", device.queued)
            device.dropped = delivery.get("dropped", device.dropped)

    @staticmethod
    def _ago(seconds):
        if seconds is None:
            return "-"
        seconds = max(0, int(seconds))
        if seconds < 60:
            return "{}s ago".format(seconds)
        if seconds < 3600:
            return "{}m{:02d}s ago".format(seconds // 60, seconds % 60)
        return "{}h{:02d}m ago".format(seconds // 3600, seconds % 3600 // 60)

    def rows(self, now: float | None = None) -> list[tuple[str, ...]]:
        """One tuple of column texts per device (sorted by id)."""
        now = self.clock() if now is None else now
        out: list[tuple[str, ...]] = []
        with self._lock:
            for d in self.devices.values():
                state = d.state or "unknown"
                if d.state == "offline" and d.reason:
                    state = "offline ({})".format(d.reason)
                fps = "-" if not isinstance(d.fps, (int, float)) else "{:.1f}".format(d.fps)
                tracks = (
                    "-" if not (d.tracks_new or d.tracks_end) else "{} new, {} end".format(d.tracks_new, d.tracks_end)
                )
                cells = (
                    d.device_id,
                    state,
                    str(d.faces),
                    format_emotion_counts(dict(d.emotions)),
                    d.dominant or "-",
                    fps,
                    str(d.events),
                    tracks,
                    "-" if d.queued is None else str(d.queued),
                    "-" if d.dropped is None else str(d.dropped),
                    self._ago(None if d.last_seen is None else now - d.last_seen),
                )
                out.append(tuple(printable(cell) for cell in cells))
        return out

    def render(self, now: float | None = None) -> str:
        """The table as text (header, one line per device, then the latest track new/end lines;
        no trailing newline)."""
        rows = self.rows(now)
        skipped = self.checks.skipped
        note = ["", "({} invalid message{} skipped: see the log)".format(skipped, "" if skipped == 1 else "s")]
        if not rows:
            return "\n".join(["(no devices yet: waiting for messages)"] + (note if skipped else []))
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(self.COLUMNS)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(self.COLUMNS, widths)).rstrip()]
        for r in rows:
            lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
        with self._lock:
            recent = list(self.recent)
        if skipped:
            lines += note
        if recent:
            lines += ["", "RECENT FACES (track new/end)"] + ["  " + line for line in recent]
        return "\n".join(lines)


ANSI_HOME_CLEAR = "\x1b[H\x1b[2J"


def run_table(
    url: str,
    device_id: str = "+",
    prefix: str = DEFAULT_PREFIX,
    out: TextIO | None = None,
    refresh: float = 1.0,
    timeout: float | None = None,
    ansi: bool | None = None,
    ready: threading.Event | None = None,
    resume: bool = False,
    table: DeviceTable | None = None,
    stop: threading.Event | None = None,
    kinds: Sequence[str] = TOPIC_KINDS,
    **options: Any,
) -> DeviceTable:
    """Show a :class:`DeviceTable` of ``<prefix>/<device_id>/<kind>`` until ``timeout`` seconds
    passed or ``stop`` (a ``threading.Event``) is set (both None: until Ctrl-C). Returns the table.

    ``ansi`` (default: ``out`` is a terminal): redraw in place every ``refresh`` seconds with
    ANSI clear-screen codes; otherwise print a snapshot (a ``--- <UTC time>`` line and the table)
    whenever something changed, at most every ``refresh`` seconds. ``resume``/``options``: as
    for :func:`fer_edge.subscribe_lines.run_subscriber`.
    """
    if out is None:
        out = sys.stdout
    if ansi is None:
        isatty = getattr(out, "isatty", None)
        ansi = bool(isatty and isatty())
    options = session_options(options, resume)
    table = table or DeviceTable()
    sub, next_message = queue_subscription(url, device_id, prefix, kinds, ready, options)
    deadline = None if timeout is None else time.monotonic() + timeout
    shown = -1
    next_draw = time.monotonic()

    def draw():
        now = time.time()
        text = table.render(now)
        if ansi:
            out.write(
                ANSI_HOME_CLEAR
                + "fer-edge devices on {}  ({})\n\n".format(
                    sub.url.redacted(), time.strftime("%H:%M:%S", time.localtime(now))
                )
                + text
                + "\n"
            )
        else:
            out.write("--- {}\n{}\n".format(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), text))
        out.flush()

    try:
        while True:
            stopping = stop is not None and stop.is_set()
            message = next_message(time.monotonic() if stopping else deadline, poll=min(0.5, refresh))
            if message is not None:
                table.update(message)
            now = time.monotonic()
            finished = (deadline is not None and now >= deadline) or (stopping and message is None)
            if now >= next_draw or finished:
                if ansi or table.version != shown:
                    draw()
                    shown = table.version
                next_draw = now + refresh
            if finished:
                return table
    finally:
        sub.stop()
