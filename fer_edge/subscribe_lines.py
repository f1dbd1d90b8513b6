"""``fer-edge subscribe``: what agents publish, as lines (host side of :mod:`edge.delivery.subscribe`).

One line per face of an emotion event, one per face-track message (``new``/``update``/``end``, as
``fer-edge run`` prints them: :func:`edge.tracking.lifecycle.format_track_line`), one per device state,
status and stats message; ``--json`` passes every payload through as it came. Delivery is
at-least-once: :class:`Deduplicator` skips events (``event_id``) and track messages
(``message_id``) that arrive a second time.

Nothing received is trusted (:mod:`fer_edge.subscribe_checks`): a message that is not valid for its
topic's JSON Schema is skipped (counted, logged once per topic), and every line is made printable
(terminal escape sequences in a payload are shown escaped, never sent to the terminal).
"""

import collections
import json
import sys
import threading
import time
from typing import Any, Sequence, TextIO

from edge.delivery.subscribe import Message, queue_subscription, session_options
from edge.delivery.url import DEFAULT_PREFIX, TOPIC_KINDS
from edge.tracking.lifecycle import format_track_line

from .subscribe_checks import MessageCheck, is_cleared, printable

EVENT_SCHEMA, TRACK_SCHEMA = "fer-edge/emotion-event", "fer-edge/track"
STATE_SCHEMA, STATUS_SCHEMA, STATS_SCHEMA = "fer-edge/state", "fer-edge/status", "fer-edge/stats"


def _number(value, pattern="{:.2f}"):
    try:
        return pattern.format(float(value))
    except (TypeError, ValueError):
        return "?"


def format_event_lines(event: dict[str, Any]) -> list[str]:
    """One line per face of an emotion event:
    ``<timestamp> <device> frame <n> track <id> <emotion> <confidence:.2f> box x,y,w,h``."""
    lines = []
    head = "{} {} frame {}".format(event.get("timestamp", "?"), event.get("device_id", "?"), event.get("frame", "?"))
    for face in event.get("faces") or []:
        box = face.get("box") or []
        lines.append(
            "{} track {} {} {} box {}".format(
                head,
                face.get("track_id", "?"),
                face.get("emotion", "?"),
                _number(face.get("confidence")),
                ",".join(str(v) for v in box),
            )
        )
    return lines


def format_emotion_counts(emotions: object) -> str:
    """``{"happiness": 2, "neutral": 1}`` -> ``happiness 2, neutral 1`` (most first); ``-`` for none."""
    if not isinstance(emotions, dict):
        return "-"
    pairs = sorted(emotions.items(), key=lambda kv: (-kv[1] if isinstance(kv[1], (int, float)) else 0, kv[0]))
    return ", ".join("{} {}".format(k, v) for k, v in pairs) or "-"


def format_state_line(state: dict[str, Any], device_id: str | None = None, retained: bool = False) -> str:
    """The device state: ``<timestamp> <device> state faces <n> dominant <emotion> (<counts>) fps <f>``."""
    line = "{} {} state faces {} dominant {}".format(
        state.get("timestamp", "?"),
        state.get("device_id", device_id or "?"),
        state.get("faces", "?"),
        state.get("dominant_emotion", "?"),
    )
    emotions = state.get("emotions")
    if emotions:
        line += " ({})".format(format_emotion_counts(emotions))
    line += " fps {}".format(_number(state["fps"], "{:.1f}") if "fps" in state else "-")  # none measured yet
    return line + (" [retained]" if retained else "")


def format_track_lines(message: dict[str, Any], device_id: str | None = None) -> list[str]:
    """The face-track message's line (:func:`edge.tracking.lifecycle.format_track_line`), printable."""
    if device_id and not message.get("device_id"):
        message = dict(message, device_id=device_id)
    return [printable(format_track_line(message))]


def json_line(message: Message) -> str:
    """``--json``'s line for a valid message: its payload as it came, or (a payload with line
    breaks or characters a terminal acts on, escaped in JSON strings or not) the same JSON compact
    with every non-ASCII character escaped."""
    text = message.payload.decode("utf-8", "replace")
    if printable(text) == text:
        return text
    return json.dumps(message.data, separators=(",", ":"))


def _stats_line(data, ts, dev):
    stages = data.get("stage_ms") or {}
    stage_text = " ".join(
        "{}={:.1f}ms".format(k, float(v)) for k, v in sorted(stages.items()) if isinstance(v, (int, float))
    )
    line = "{} {} stats fps {} frames {} faces {}".format(
        ts, dev, _number(data.get("fps"), "{:.1f}"), data.get("frames", "?"), data.get("faces", "?")
    )
    delivery = data.get("delivery")
    if isinstance(delivery, dict):
        line += " queued {} dropped {} reconnects {}".format(
            delivery.get("queued", "?"), delivery.get("dropped", "?"), delivery.get("reconnects", "?")
        )
    return line + (" " + stage_text if stage_text else "")


def format_message_lines(message: Message) -> list[str]:
    """Human lines for a received :class:`edge.delivery.subscribe.Message` (events, tracks, state, status,
    stats, other) that :class:`fer_edge.subscribe_checks.MessageCheck` accepted; every line printable."""
    return [printable(line) for line in _message_lines(message)]


def _message_lines(message):
    data = message.data
    if not message.payload and message.data is None and message.retain:
        return ["{} (empty retained message: the retained value was cleared)".format(message.topic)]
    if not isinstance(data, dict):
        text = message.payload.decode("utf-8", "replace")
        return ["{} (not fer-edge JSON) {}".format(message.topic, text)]
    schema = data.get("schema")
    ts, dev = data.get("timestamp", "?"), data.get("device_id", message.device_id or "?")
    if schema == EVENT_SCHEMA or (schema is None and message.kind == "events"):
        lines = format_event_lines(data)
        if not lines:
            lines = ["{} {} frame {} no faces".format(ts, dev, data.get("frame", "?"))]
        return lines
    if schema == TRACK_SCHEMA or (schema is None and message.kind == "tracks"):
        return format_track_lines(data, message.device_id)
    if schema == STATE_SCHEMA or (schema is None and message.kind == "state"):
        return [format_state_line(data, message.device_id, message.retain)]
    if schema == STATUS_SCHEMA or (schema is None and message.kind == "status"):
        line = "{} {} status {}".format(ts, dev, data.get("state", "?"))
        if data.get("reason"):
            line += " ({})".format(data["reason"])
        if message.retain:
            line += " [retained]"
        return [line]
    if schema == STATS_SCHEMA or (schema is None and message.kind == "stats"):
        return [_stats_line(data, ts, dev)]
    return ["{} {}".format(message.topic, json.dumps(data, sort_keys=True))]


# What makes a message a repeat, per topic kind: emotion events carry event_id, track messages
# message_id. Other kinds (status, state, stats) are never duplicates.
DEDUPE_KEYS = {"events": "event_id", "tracks": "message_id"}


class Deduplicator(object):
    """Remembers the last ``size`` ids per device and kind: ``seen(message)`` is True for an event
    (``event_id``) or track message (``message_id``) delivered a second time (at-least-once
    delivery). Messages without such an id are never duplicates."""

    def __init__(self, size: int = 10000):
        self.size = int(size)
        self.duplicates = 0
        # (device id, kind) -> (the ids seen, the same ids oldest first); ids as the JSON gives them
        self._ids: dict[tuple[str, str], tuple[set[Any], collections.deque[Any]]] = {}

    def seen(self, message: Message) -> bool:
        data = message.data
        key = DEDUPE_KEYS.get(message.kind)
        if key is None or not isinstance(data, dict) or not data.get(key):
            return False
        slot = (data.get("device_id") or message.device_id, message.kind)
        ids = self._ids.get(slot)
        if ids is None:
            ids = self._ids[slot] = (set(), collections.deque())
        known, order = ids
        value = data[key]
        if not isinstance(value, str):  # not an id (an invalid message): never a duplicate
            return False
        if value in known:
            self.duplicates += 1
            return True
        known.add(value)
        order.append(value)
        if len(order) > self.size:
            known.discard(order.popleft())
        return False


def run_subscriber(
    url: str,
    device_id: str = "+",
    prefix: str = DEFAULT_PREFIX,
    json_mode: bool = False,
    out: TextIO | None = None,
    max_messages: int | None = None,
    timeout: float | None = None,
    kinds: Sequence[str] = TOPIC_KINDS,
    ready: threading.Event | None = None,
    resume: bool = False,
    dedupe: bool = True,
    stop: threading.Event | None = None,
    checks: MessageCheck | None = None,
    **options: Any,
) -> int:
    """Print messages of ``<prefix>/<device_id>/<kind>`` (``kinds``: events, status, stats, tracks,
    state) until ``max_messages`` were printed, ``timeout`` seconds passed or ``stop`` (a
    ``threading.Event``) is set (all None: forever; Ctrl-C propagates after clean-up). Returns the
    number of messages printed.

    Human mode: :func:`format_message_lines`. ``json_mode``: each raw payload on its own line.
    ``out``: a text stream (default ``sys.stdout``). ``ready``: optional ``threading.Event`` set
    once subscribed. ``resume``: a persistent session for ``client_id`` (the QoS 1 messages
    published since this client id was last connected come first). ``dedupe``: skip events and
    track messages already printed. ``checks``: the :class:`fer_edge.subscribe_checks.MessageCheck` that skips
    (counts, logs once per topic) invalid messages, in both modes (default: a new one). ``options``:
    keyword arguments of :func:`edge.delivery.subscribe.subscribe` (``qos``, ``client_id``, ``username``,
    ``password``, ``ca_certs``, ``certfile``, ...).
    """
    if out is None:
        out = sys.stdout
    if checks is None:
        checks = MessageCheck()
    if max_messages is not None and max_messages <= 0:
        return 0
    options = session_options(options, resume)
    seen = Deduplicator() if dedupe else None
    sub, next_message = queue_subscription(url, device_id, prefix, kinds, ready, options)
    deadline = None if timeout is None else time.monotonic() + timeout
    printed = 0
    try:
        while max_messages is None or printed < max_messages:
            stopping = stop is not None and stop.is_set()  # then: what has arrived, and return
            message = next_message(time.monotonic() if stopping else deadline, poll=0.2 if stop is not None else 0.5)
            if message is None:
                if stopping or (deadline is not None and time.monotonic() >= deadline):
                    return printed
                continue
            if not checks.accept(message):
                continue
            if seen is not None and seen.seen(message):
                continue
            if json_mode:
                if is_cleared(message):  # a cleared retained value: nothing to pass through
                    continue
                out.write(json_line(message) + "\n")
            else:
                for line in format_message_lines(message):
                    out.write(line + "\n")
            out.flush()
            printed += 1
        return printed
    finally:
        sub.stop()
