"""Subscribing to fer-edge topics (Python 3.6 compatible): the library side.

The paho client comes from :func:`edge.delivery.client.create_client` (the only place that imports
paho-mqtt). :func:`subscribe` is the building block (tests, dashboards, device code): a callback
per :class:`Message` of ``<prefix>/<device_id>/<kind>`` for the kinds of
:data:`edge.delivery.url.TOPIC_KINDS` (events, status, stats, tracks, state).
:func:`queue_subscription` feeds a queue instead, for a consumer loop; :func:`session_options`
turns ``resume`` into a persistent session (clean_session False with a fixed client id: the
broker keeps the QoS 1 messages published while the subscriber is away, docs/mqtt.md).

Retained messages (each device's last status and state) arrive at every subscription, so a new
subscriber knows every device's state at once.

The terminal views (``fer-edge subscribe``: lines, the live table, de-duplication) are host
code: :mod:`fer_edge.subscribe_lines` and :mod:`fer_edge.subscribe_table`.
"""

import collections
import json
import logging
import os
import threading
import time
from typing import Deque

from edge.delivery.client import (
    DEFAULT_KEEPALIVE,
    DEFAULT_RECONNECT_DELAY,
    create_client,
    disconnect_rc,
    rc_text,
    rc_value,
    subscribe_granted_ok,
)
from edge.delivery.url import DEFAULT_PREFIX, TOPIC_KINDS, parse_topic, parse_url, subscription_topics

log = logging.getLogger(__name__)

# One received message. ``data``: the decoded JSON (None if the payload is not JSON);
# ``device_id``/``kind``: from the topic (None for a topic outside the prefix); ``dup``: the
# broker's DUP flag (a re-delivery of a message it may have delivered already).
Message = collections.namedtuple("Message", "topic device_id kind payload data retain qos dup")
Message.__new__.__defaults__ = (False,)


def _decode(payload):
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: JSON nested too deep
        return None


class Subscription(object):
    """A running subscriber (see :func:`subscribe`): ``wait_subscribed()``, ``stop()``."""

    def __init__(
        self,
        url,
        topic_filters,
        prefix,
        on_message,
        qos,
        client_id,
        clean_session,
        keepalive,
        client_options,
        ready=None,
    ):
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
        self._client = create_client(self.url, client_id, clean_session=clean_session, max_queued=0, **client_options)
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
                log.warning("MQTT connection to %s refused: %s", self.url.redacted(), self.last_error)
                return
            self._connected.set()
            present = getattr(flags, "session_present", None)
            if present is None and isinstance(flags, dict):
                present = flags.get("session present")
            self.session_present = bool(present)
            if not self.clean_session and not self.session_present:
                log.info(
                    "no session for client id %s at the broker yet: it keeps messages for it from now on",
                    self.client_id,
                )
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
                log.warning("MQTT connection to %s lost (%s); reconnecting", self.url.redacted(), self.last_error)
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
            message = Message(
                topic,
                device_id,
                kind,
                bytes(msg.payload),
                _decode(msg.payload),
                bool(msg.retain),
                int(msg.qos),
                bool(getattr(msg, "dup", False)),
            )
            self.received += 1
            if self._on_message_cb is not None:
                self._on_message_cb(message)
        except Exception:
            log.exception("error handling MQTT message on %s", getattr(msg, "topic", "?"))


def subscribe(
    url,
    device_id="+",
    prefix=DEFAULT_PREFIX,
    on_message=None,
    kinds=TOPIC_KINDS,
    qos=1,
    client_id=None,
    clean_session=True,
    keepalive=DEFAULT_KEEPALIVE,
    username=None,
    password=None,
    ca_certs=None,
    certfile=None,
    keyfile=None,
    ready=None,
    reconnect_delay=DEFAULT_RECONNECT_DELAY,
    tls_insecure=False,
    alpn=None,
):
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
    sub = Subscription(
        url,
        filters,
        prefix,
        on_message,
        qos,
        client_id,
        clean_session,
        keepalive,
        {
            "username": username,
            "password": password,
            "ca_certs": ca_certs,
            "certfile": certfile,
            "keyfile": keyfile,
            "reconnect_delay": reconnect_delay,
            "tls_insecure": tls_insecure,
            "alpn": alpn,
        },
        ready,
    )
    sub._start()
    return sub


def session_options(options, resume):
    """``options`` (keyword arguments of :func:`subscribe`) with ``clean_session`` from ``resume``:
    a persistent session, which needs a client id (ValueError without one)."""
    options = dict(options)
    if resume:
        if not options.get("client_id"):
            raise ValueError(
                "resuming a session (--since) needs a fixed client id (--client-id): the "
                "broker keeps messages for that id while the subscriber is away"
            )
        options["clean_session"] = False
    return options


def queue_subscription(url, device_id="+", prefix=DEFAULT_PREFIX, kinds=TOPIC_KINDS, ready=None, options=None):
    """A started subscription feeding a queue: ``(sub, next_message(deadline, poll=0.5))``.

    ``options``: keyword arguments of :func:`subscribe`. Stop ``sub`` when done."""
    received: Deque[Message] = collections.deque()
    arrived = threading.Condition()

    def on_message(message):
        with arrived:
            received.append(message)
            arrived.notify()

    sub = subscribe(
        url, device_id=device_id, prefix=prefix, on_message=on_message, kinds=kinds, ready=ready, **(options or {})
    )

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
