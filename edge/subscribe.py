"""Subscribing to fer-edge topics and printing what agents publish (Python 3.6 compatible).

The paho client comes from :func:`edge.publish.create_client` (the only place that imports
paho-mqtt). ``run_subscriber`` is what ``fer-edge subscribe`` runs; ``subscribe`` is the
building block (tests, dashboards).
"""

import collections
import json
import logging
import os
import sys
import threading
import time

from .mqtt_url import DEFAULT_PREFIX, TOPIC_KINDS, parse_topic, parse_url, subscription_topics
from .publish import (DEFAULT_KEEPALIVE, create_client, disconnect_rc, rc_text, rc_value,
                      subscribe_granted_ok)

log = logging.getLogger(__name__)

# One received message. ``data``: the decoded JSON (None if the payload is not JSON);
# ``device_id``/``kind``: from the topic (None for a topic outside the prefix).
Message = collections.namedtuple("Message", "topic device_id kind payload data retain qos")


def _decode(payload):
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


class Subscription(object):
    """A running subscriber (see :func:`subscribe`): ``wait_subscribed()``, ``stop()``."""

    def __init__(self, url, topic_filters, prefix, on_message, qos, client_id, clean_session,
                 keepalive, client_options, ready=None):
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
                              bool(msg.retain), int(msg.qos))
            self.received += 1
            if self._on_message_cb is not None:
                self._on_message_cb(message)
        except Exception:
            log.exception("error handling MQTT message on %s", getattr(msg, "topic", "?"))


def subscribe(url, device_id="+", prefix=DEFAULT_PREFIX, on_message=None, kinds=TOPIC_KINDS,
              qos=1, client_id=None, clean_session=True, keepalive=DEFAULT_KEEPALIVE,
              username=None, password=None, ca_certs=None, certfile=None, keyfile=None,
              ready=None):
    """Subscribe to ``<prefix>/<device_id>/<kind>`` for each of ``kinds`` and call
    ``on_message(Message)`` from paho's network thread for every message.

    ``device_id`` ``+`` means all devices. Returns a started :class:`Subscription` at once
    (the connection is made in the background and re-made after losses, re-subscribing);
    use ``wait_subscribed(timeout)`` before relying on it and ``stop()`` at the end.
    ``clean_session=False`` with a fixed ``client_id`` keeps QoS 1 messages for the
    subscriber at the broker while it is away. ``ready``: optional ``threading.Event`` set
    when the subscription is acknowledged.
    """
    filters = subscription_topics(prefix, device_id, kinds)
    if client_id is None:
        client_id = "fer-edge-sub-" + os.urandom(6).hex()
    elif not clean_session and not client_id:
        raise ValueError("a persistent session (clean_session=False) needs a client id")
    sub = Subscription(url, filters, prefix, on_message, qos, client_id, clean_session,
                       keepalive, {"username": username, "password": password,
                                   "ca_certs": ca_certs, "certfile": certfile,
                                   "keyfile": keyfile}, ready)
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
        return [line + (" " + stage_text if stage_text else "")]
    return ["{} {}".format(message.topic, json.dumps(data, sort_keys=True))]


def run_subscriber(url, device_id="+", prefix=DEFAULT_PREFIX, json_mode=False, out=None,
                   max_messages=None, timeout=None, kinds=TOPIC_KINDS, ready=None, **options):
    """Print messages of ``<prefix>/<device_id>/{events,status,stats}`` until ``max_messages``
    were printed or ``timeout`` seconds passed (None: forever; Ctrl-C propagates after
    clean-up). Returns the number of messages printed.

    Human mode: :func:`format_message_lines` (one line per face for events). ``json_mode``:
    each raw payload on its own line. ``out``: a text stream (default ``sys.stdout``).
    ``ready``: optional ``threading.Event`` set once subscribed. ``options``: ``qos``,
    ``client_id``, ``username``, ``password``, ``ca_certs``, ``certfile``, ``keyfile``,
    ``keepalive`` (see :func:`subscribe`).
    """
    if out is None:
        out = sys.stdout
    if max_messages is not None and max_messages <= 0:
        return 0
    received = collections.deque()
    arrived = threading.Condition()

    def on_message(message):
        with arrived:
            received.append(message)
            arrived.notify()

    sub = subscribe(url, device_id=device_id, prefix=prefix, on_message=on_message,
                    kinds=kinds, ready=ready, **options)
    deadline = None if timeout is None else time.monotonic() + timeout
    printed = 0
    try:
        while max_messages is None or printed < max_messages:
            with arrived:
                while not received:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return printed
                    arrived.wait(0.5 if remaining is None else min(remaining, 0.5))
                message = received.popleft()
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
