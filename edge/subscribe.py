"""Subscribing to fer-edge topics and showing what agents publish (Python 3.6 compatible).

The paho client comes from :func:`edge.mqtt_client.create_client` (the only place that imports
paho-mqtt). ``subscribe`` is the building block (tests, dashboards); the tools on it:

* :func:`run_subscriber`: one line per face (or raw JSON with ``json_mode``);
* :func:`run_table`: a live table per device (faces, current emotions, fps, queue, last seen,
  online/offline), redrawn with plain ANSI codes on a terminal, printed as snapshots otherwise;
* both de-duplicate events by ``(device_id, event_id)`` (delivery is at-least-once), and both
  take ``resume=True`` with a ``client_id``: a persistent session (clean_session False), so the
  broker keeps the QoS 1 messages published while this subscriber is away and delivers them
  when it comes back (docs/mqtt.md, "Subscriber tools").

Retained status messages (each device's last online/offline) arrive at every subscription,
so a new subscriber knows every device's state at once.
"""

import collections
import json
import logging
import os
import sys
import threading
import time

from .mqtt_url import DEFAULT_PREFIX, TOPIC_KINDS, parse_topic, parse_url, subscription_topics
from .mqtt_client import (DEFAULT_KEEPALIVE, DEFAULT_RECONNECT_DELAY, create_client, disconnect_rc,
                          rc_text, rc_value, subscribe_granted_ok)

log = logging.getLogger(__name__)

# One received message. ``data``: the decoded JSON (None if the payload is not JSON);
# ``device_id``/``kind``: from the topic (None for a topic outside the prefix); ``dup``: the
# broker's DUP flag (a re-delivery of a message it may have delivered already).
Message = collections.namedtuple("Message", "topic device_id kind payload data retain qos dup")
Message.__new__.__defaults__ = (False,)


def _decode(payload):
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


class Subscription(object):
    """A running subscriber (see :func:`subscribe`): ``wait_subscribed()``, ``stop()``."""

    def __init__(self, url, topic_filters, prefix, on_message, qos, client_id, clean_session,
                 keepalive, client_options, ready=None):
        self.clean_session = clean_session
        self.session_present = None  # from the last CONNACK (persistent sessions)
        self.url = parse_url(url)
        self.topic_filters = list(topic_filters)
        self.prefix = prefix
        self.qos = qos
        self.client_id = client_id
        self._on_message_cb = on_message
        self._subscribed = threading.Event()
        self._connected = threading.Event()
        self._sub_mid = None
        self._lock = threading.Lock()
        self.last_error = None
        self.received = 0
        self._client = create_client(self.url, client_id, clean_session=clean_session,
                                     max_queued=0, **client_options)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._keepalive = keepalive
        self._stopped = False
        self._ready = ready

    def _start(self):
        self._client.connect_async(self.url.host, self.url.port, self._keepalive)
        self._client.loop_start()

    @property
    def connected(self):
        return self._connected.is_set()

    @property
    def subscribed(self):
        return self._subscribed.is_set()

    def wait_subscribed(self, timeout=None):
        """Block until the broker acknowledged the subscription (True) or timeout (False)."""
        return self._subscribed.wait(timeout)

    def stop(self):
        """Disconnect and stop the network thread. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._client.disconnect()
        except Exception:  # pragma: no cover
            pass
        self._client.loop_stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    # paho callbacks, both paho 1.x and 2.x VERSION2 signatures; they never raise.

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        try:
            if rc_value(rc) != 0:
                self.last_error = rc_text(rc, connack=True)
                log.warning("MQTT connection to %s refused: %s", self.url.redacted(),
                            self.last_error)
                return
            self._connected.set()
            present = getattr(flags, "session_present", None)
            if present is None and isinstance(flags, dict):
                present = flags.get("session present")
            self.session_present = bool(present)
            if not self.clean_session and not self.session_present:
                log.info("no session for client id %s at the broker yet: it keeps messages for it "
                         "from now on", self.client_id)
            result, mid = client.subscribe([(t, self.qos) for t in self.topic_filters])
            with self._lock:
                self._sub_mid = mid
        except Exception:  # pragma: no cover
            log.exception("error in MQTT on_connect")

    def _on_disconnect(self, client, userdata, *args):
        try:
            was_connected = self._connected.is_set()
            self._connected.clear()
            self._subscribed.clear()
            rc = disconnect_rc(args)
            if rc_value(rc) != 0 and not self._stopped and was_connected:
                self.last_error = rc_text(rc)
                log.warning("MQTT connection to %s lost (%s); reconnecting", self.url.redacted(),
                            self.last_error)
        except Exception:  # pragma: no cover
            log.exception("error in MQTT on_disconnect")

    def _on_subscribe(self, client, userdata, mid, granted, *args):
        try:
            if not subscribe_granted_ok(granted):
                self.last_error = "subscription to {} refused".format(", ".join(self.topic_filters))
                log.error("MQTT %s", self.last_error)
                return
            self._subscribed.set()
            if self._ready is not None:
                self._ready.set()
        except Exception:  # pragma: no cover
            log.exception("error in MQTT on_subscribe")

    def _on_message(self, client, userdata, msg):
        try:
            topic = msg.topic
            device_id, kind = parse_topic(self.prefix, topic)
            message = Message(topic, device_id, kind, bytes(msg.payload), _decode(msg.payload),
                              bool(msg.retain), int(msg.qos), bool(getattr(msg, "dup", False)))
            self.received += 1
            if self._on_message_cb is not None:
                self._on_message_cb(message)
        except Exception:
            log.exception("error handling MQTT message on %s", getattr(msg, "topic", "?"))


def subscribe(url, device_id="+", prefix=DEFAULT_PREFIX, on_message=None, kinds=TOPIC_KINDS,
              qos=1, client_id=None, clean_session=True, keepalive=DEFAULT_KEEPALIVE,
              username=None, password=None, ca_certs=None, certfile=None, keyfile=None,
              ready=None, reconnect_delay=DEFAULT_RECONNECT_DELAY, tls_insecure=False, alpn=None):
    """Subscribe to ``<prefix>/<device_id>/<kind>`` for each of ``kinds`` and call
    ``on_message(Message)`` from paho's network thread for every message.

    ``device_id`` ``+`` means all devices. Returns a started :class:`Subscription` at once
    (the connection is made in the background and re-made after losses, re-subscribing);
    use ``wait_subscribed(timeout)`` before relying on it and ``stop()`` at the end.
    ``clean_session=False`` with a fixed ``client_id`` keeps QoS 1 messages for the
    subscriber at the broker while it is away. ``ready``: optional ``threading.Event`` set
    when the subscription is acknowledged. ``reconnect_delay``: paho's (min, max) back-off.
    """
    filters = subscription_topics(prefix, device_id, kinds)
    if client_id is None:
        client_id = "fer-edge-sub-" + os.urandom(6).hex()
    elif not clean_session and not client_id:
        raise ValueError("a persistent session (clean_session=False) needs a client id")
    sub = Subscription(url, filters, prefix, on_message, qos, client_id, clean_session,
                       keepalive, {"username": username, "password": password,
                                   "ca_certs": ca_certs, "certfile": certfile,
                                   "keyfile": keyfile, "reconnect_delay": reconnect_delay,
                                   "tls_insecure": tls_insecure, "alpn": alpn}, ready)
    sub._start()
    return sub


def format_event_lines(event):
    """One line per face of an emotion event:
    ``<timestamp> <device> frame <n> track <id> <emotion> <confidence:.2f> box x,y,w,h``."""
    lines = []
    head = "{} {} frame {}".format(event.get("timestamp", "?"), event.get("device_id", "?"),
                                   event.get("frame", "?"))
    for face in event.get("faces") or []:
        box = face.get("box") or []
        try:
            confidence = "{:.2f}".format(float(face.get("confidence")))
        except (TypeError, ValueError):
            confidence = "?"
        lines.append("{} track {} {} {} box {}".format(
            head, face.get("track_id", "?"), face.get("emotion", "?"), confidence,
            ",".join(str(v) for v in box)))
    return lines


def format_message_lines(message):
    """Human lines for any received :class:`Message` (events, status, stats, other)."""
    data = message.data
    if not isinstance(data, dict):
        text = message.payload.decode("utf-8", "replace")
        return ["{} (not fer-edge JSON) {}".format(message.topic, text)]
    schema = data.get("schema")
    ts, dev = data.get("timestamp", "?"), data.get("device_id", message.device_id or "?")
    if schema == "fer-edge/emotion-event" or message.kind == "events":
        lines = format_event_lines(data)
        if not lines:
            lines = ["{} {} frame {} no faces".format(ts, dev, data.get("frame", "?"))]
        return lines
    if schema == "fer-edge/status" or message.kind == "status":
        line = "{} {} status {}".format(ts, dev, data.get("state", "?"))
        if data.get("reason"):
            line += " ({})".format(data["reason"])
        if message.retain:
            line += " [retained]"
        return [line]
    if schema == "fer-edge/stats" or message.kind == "stats":
        stages = data.get("stage_ms") or {}
        stage_text = " ".join("{}={:.1f}ms".format(k, float(v)) for k, v in sorted(stages.items())
                              if isinstance(v, (int, float)))
        try:
            fps = "{:.1f}".format(float(data.get("fps")))
        except (TypeError, ValueError):
            fps = "?"
        line = "{} {} stats fps {} frames {} faces {}".format(
            ts, dev, fps, data.get("frames", "?"), data.get("faces", "?"))
        delivery = data.get("delivery")
        if isinstance(delivery, dict):
            line += " queued {} dropped {} reconnects {}".format(
                delivery.get("queued", "?"), delivery.get("dropped", "?"), delivery.get("reconnects", "?"))
        return [line + (" " + stage_text if stage_text else "")]
    return ["{} {}".format(message.topic, json.dumps(data, sort_keys=True))]


class Deduplicator(object):
    """Remembers the last ``size`` ``event_id``s per device: ``seen(message)`` is True for an event
    delivered a second time (at-least-once delivery). Messages without an event_id are never
    duplicates."""

    def __init__(self, size=10000):
        self.size = int(size)
        self.duplicates = 0
        self._ids = {}

    def seen(self, message):
        data = message.data
        if message.kind != "events" or not isinstance(data, dict) or not data.get("event_id"):
            return False
        device = data.get("device_id") or message.device_id
        ids = self._ids.get(device)
        if ids is None:
            ids = self._ids[device] = (set(), collections.deque())
        known, order = ids
        event_id = data["event_id"]
        if event_id in known:
            self.duplicates += 1
            return True
        known.add(event_id)
        order.append(event_id)
        if len(order) > self.size:
            known.discard(order.popleft())
        return False


def _session_options(options, resume):
    """``clean_session`` from ``resume`` (a persistent session needs a client id)."""
    options = dict(options)
    if resume:
        if not options.get("client_id"):
            raise ValueError("resuming a session (--since) needs a fixed client id (--client-id): the "
                             "broker keeps messages for that id while the subscriber is away")
        options["clean_session"] = False
    return options


def _queue_subscription(url, device_id, prefix, kinds, ready, options):
    """A subscription feeding a queue: ``(sub, next_message(deadline))``."""
    received = collections.deque()
    arrived = threading.Condition()

    def on_message(message):
        with arrived:
            received.append(message)
            arrived.notify()

    sub = subscribe(url, device_id=device_id, prefix=prefix, on_message=on_message,
                    kinds=kinds, ready=ready, **options)

    def next_message(deadline, poll=0.5):
        """The next message, or None when ``deadline`` (monotonic; None: never) passed or after
        ``poll`` seconds without one."""
        with arrived:
            if not received:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                arrived.wait(poll if remaining is None else min(remaining, poll))
            return received.popleft() if received else None

    return sub, next_message


def run_subscriber(url, device_id="+", prefix=DEFAULT_PREFIX, json_mode=False, out=None,
                   max_messages=None, timeout=None, kinds=TOPIC_KINDS, ready=None, resume=False,
                   dedupe=True, **options):
    """Print messages of ``<prefix>/<device_id>/{events,status,stats}`` until ``max_messages``
    were printed or ``timeout`` seconds passed (None: forever; Ctrl-C propagates after
    clean-up). Returns the number of messages printed.

    Human mode: :func:`format_message_lines` (one line per face for events). ``json_mode``:
    each raw payload on its own line. ``out``: a text stream (default ``sys.stdout``).
    ``ready``: optional ``threading.Event`` set once subscribed. ``resume``: a persistent
    session for ``client_id`` (the QoS 1 messages published since this client id was last
    connected come first). ``dedupe``: skip events already printed (same event_id).
    ``options``: ``qos``, ``client_id``, ``username``, ``password``, ``ca_certs``,
    ``certfile``, ``keyfile``, ``keepalive``, ``reconnect_delay`` (see :func:`subscribe`).
    """
    if out is None:
        out = sys.stdout
    if max_messages is not None and max_messages <= 0:
        return 0
    options = _session_options(options, resume)
    seen = Deduplicator() if dedupe else None
    sub, next_message = _queue_subscription(url, device_id, prefix, kinds, ready, options)
    deadline = None if timeout is None else time.monotonic() + timeout
    printed = 0
    try:
        while max_messages is None or printed < max_messages:
            message = next_message(deadline)
            if message is None:
                if deadline is not None and time.monotonic() >= deadline:
                    return printed
                continue
            if seen is not None and seen.seen(message):
                continue
            if json_mode:
                out.write(message.payload.decode("utf-8", "replace") + "\n")
            else:
                for line in format_message_lines(message):
                    out.write(line + "\n")
            out.flush()
            printed += 1
        return printed
    finally:
        sub.stop()


# --- the live table ---------------------------------------------------------------------------

class DeviceState(object):
    """What the table knows about one device."""

    def __init__(self, device_id):
        self.device_id = device_id
        self.state = None        # "online" / "offline" / None (no status seen)
        self.reason = None
        self.faces = 0           # faces in the latest event
        self.emotions = collections.Counter()  # top emotions of those faces
        self.events = 0
        self.fps = None
        self.frames = None
        self.queued = None
        self.dropped = None
        self.last_seen = None    # time.time() of the last message received
        self.last_event = None   # the latest event's timestamp text


class DeviceTable(object):
    """Per-device summary of the messages given to :meth:`update` (thread-safe); ``render``
    makes the text table."""

    COLUMNS = ("DEVICE", "STATE", "FACES", "EMOTIONS", "FPS", "EVENTS", "QUEUED", "DROPPED", "LAST SEEN")

    def __init__(self, clock=time.time):
        self.devices = collections.OrderedDict()
        self.clock = clock
        self.version = 0  # bumps on every change
        self._lock = threading.Lock()
        self._dedupe = Deduplicator()

    def update(self, message):
        """Fold one :class:`Message` in; returns False for messages it ignores."""
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
            if message.kind == "status":
                device.state = data.get("state")
                device.reason = data.get("reason")
            elif message.kind == "events":
                faces = data.get("faces") or []
                device.faces = len(faces)
                device.emotions = collections.Counter(f.get("emotion", "?") for f in faces)
                device.events += 1
                device.last_event = data.get("timestamp")
                if device.state is None:
                    device.state = "online"
            elif message.kind == "stats":
                device.fps = data.get("fps")
                device.frames = data.get("frames")
                delivery = data.get("delivery") or {}
                device.queued = delivery.get("queued", device.queued)
                device.dropped = delivery.get("dropped", device.dropped)
            if not message.retain:
                device.last_seen = self.clock()
            self.version += 1
        return True

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

    def rows(self, now=None):
        """One tuple of column texts per device (sorted by id)."""
        now = self.clock() if now is None else now
        out = []
        with self._lock:
            for d in self.devices.values():
                state = d.state or "unknown"
                if d.state == "offline" and d.reason:
                    state = "offline ({})".format(d.reason)
                emotions = ", ".join("{} {}".format(e, n) for e, n in
                                     sorted(d.emotions.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"
                fps = "-" if not isinstance(d.fps, (int, float)) else "{:.1f}".format(d.fps)
                out.append((d.device_id, state, str(d.faces), emotions, fps, str(d.events),
                            "-" if d.queued is None else str(d.queued),
                            "-" if d.dropped is None else str(d.dropped),
                            self._ago(None if d.last_seen is None else now - d.last_seen)))
        return out

    def render(self, now=None):
        """The table as text (header, one line per device; no trailing newline)."""
        rows = self.rows(now)
        if not rows:
            return "(no devices yet: waiting for messages)"
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(self.COLUMNS)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(self.COLUMNS, widths)).rstrip()]
        for r in rows:
            lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
        return "\n".join(lines)


ANSI_HOME_CLEAR = "\x1b[H\x1b[2J"


def run_table(url, device_id="+", prefix=DEFAULT_PREFIX, out=None, refresh=1.0, timeout=None,
              ansi=None, ready=None, resume=False, table=None, **options):
    """Show a :class:`DeviceTable` of ``<prefix>/<device_id>/#`` until ``timeout`` seconds
    passed (None: until Ctrl-C). Returns the table.

    ``ansi`` (default: ``out`` is a terminal): redraw in place every ``refresh`` seconds with
    ANSI clear-screen codes; otherwise print a snapshot (a ``--- <UTC time>`` line and the table)
    whenever something changed, at most every ``refresh`` seconds. ``resume``/``options``: as
    for :func:`run_subscriber`.
    """
    if out is None:
        out = sys.stdout
    if ansi is None:
        isatty = getattr(out, "isatty", None)
        ansi = bool(isatty and isatty())
    options = _session_options(options, resume)
    table = table or DeviceTable()
    sub, next_message = _queue_subscription(url, device_id, prefix, TOPIC_KINDS, ready, options)
    deadline = None if timeout is None else time.monotonic() + timeout
    shown = -1
    next_draw = time.monotonic()

    def draw():
        now = time.time()
        text = table.render(now)
        if ansi:
            out.write(ANSI_HOME_CLEAR + "fer-edge devices on {}  ({})\n\n".format(
                sub.url.redacted(), time.strftime("%H:%M:%S", time.localtime(now))) + text + "\n")
        else:
            out.write("--- {}\n{}\n".format(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), text))
        out.flush()

    try:
        while True:
            message = next_message(deadline, poll=min(0.5, refresh))
            if message is not None:
                table.update(message)
            now = time.monotonic()
            finished = deadline is not None and now >= deadline
            if now >= next_draw or finished:
                if ansi or table.version != shown:
                    draw()
                    shown = table.version
                next_draw = now + refresh
            if finished:
                return table
    finally:
        sub.stop()
