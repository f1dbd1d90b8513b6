"""The MQTT publisher (paho-mqtt 1.x or 2.x, through :mod:`edge.delivery.client`, the one module that
imports paho). Python 3.6 compatible. Its network thread's half is :mod:`edge.delivery.network`.

MQTT behaviour (:class:`MqttPublisher`; docs/mqtt.md has the operator's view):

* client id ``fer-edge-<device_id>-<6 random hex digits>``, different for every publisher, so two
  agents never share one by default (override with ``client_id``; AWS IoT Core policies usually
  want the thing name); clean session, MQTT 3.1.1. Two clients with one id knock each other off:
  :class:`edge.delivery.client.TakeoverWatch` notices it and the log says which id and what to change;
  a second agent with this device id on this host (its queue file is locked) is warned about too;
* every event, stats and track message goes to the **outbox** first (:mod:`edge.delivery.outbox`): on disk
  (SQLite in ``data_dir``) or, without ``data_dir``, in memory. Bounded (``max_queued``
  messages, ``queue_max_bytes`` bytes, and the space on the disk); beyond the bounds the oldest are
  dropped and counted;
* one network thread owns the paho client: it connects, sends the outbox oldest first with QoS 1
  (``qos``), at most ``max_inflight`` unacknowledged at a time, and deletes a row only when the
  broker's PUBACK for it arrived. Order: one TCP connection keeps the order, and after a
  reconnection paho re-sends the unacknowledged messages (DUP) before anything newer; after a
  restart the outbox is sent from its oldest row. Delivery is at-least-once: a message whose
  PUBACK was lost is sent again, with the same ``event_id``;
* events get ``seq`` and ``event_id`` (see :mod:`edge.delivery.outbox`); stats get a ``delivery``
  object (queue depth and bytes, dropped, reconnects, ...);
* ``start()`` never blocks and never fails because the broker is unreachable; the thread retries
  with exponential back-off and jitter (``reconnect_delay`` = (min, max) seconds;
  :func:`backoff_delay`);
* latest-value messages (``publish_state``, ``publish_retained``: the device state, Home Assistant
  discovery) are retained, QoS 1, not queued: the newest value per topic is sent when connected,
  ahead of the outbox, and every value again after each reconnection (:mod:`edge.delivery.retained`);
* ``<prefix>/<device_id>/status``: a retained ``online`` status (QoS 1) on every (re)connect,
  sent directly (not queued); the last will is a retained ``offline`` status with
  ``reason: connection-lost``; ``close()`` publishes a retained ``offline`` status with
  ``reason: shutdown``;
* ``close(timeout)`` waits (at most ``timeout``, default ``flush_timeout``) until the outbox is
  empty, publishes the offline status, disconnects. With an on-disk outbox what is left is sent
  at the next start; in memory it is lost (counted in ``dropped``);
* TLS (``mqtts://``): :func:`make_ssl_context` (CA file or the system CAs, client certificate
  and key, host name verification unless ``tls_insecure``, ALPN ``x-amzn-mqtt-ca`` for AWS IoT
  Core on port 443). Why a connection fails (refused, certificate not trusted, client
  certificate required, bad credentials) is in ``last_error`` and the log.

Passwords never appear in logs or reprs.
"""

import collections
import logging
import random
import threading
import time

from edge.delivery.base import Publisher, retained_text
from edge.delivery.client import PROTOCOLS, TakeoverWatch, create_client, paho_client_module, paho_version
from edge.delivery.network import MAX_DIRECT_INFLIGHT, NetworkLoop
from edge.delivery.outbox import DEFAULT_MAX_BYTES, DEFAULT_MAX_EVENTS, Outbox, queue_path
from edge.delivery.retained import LatestValues, restore_unsent
from edge.delivery.tls import alpn_protocols, make_ssl_context
from edge.delivery.url import DEFAULT_PREFIX, check_device_id, parse_url, topics
from edge.events.payloads import to_json

log = logging.getLogger(__name__)

DEFAULT_MAX_QUEUED = DEFAULT_MAX_EVENTS
DEFAULT_MAX_INFLIGHT = 32
DEFAULT_FLUSH_TIMEOUT = 5.0

_monotonic = time.monotonic


class MqttPublisher(NetworkLoop, Publisher):
    """Publishes events, stats and status to an MQTT broker (paho-mqtt 1.x or 2.x) through a
    bounded outbox (see the module doc).

    ``settings``: how to reach the broker (:class:`edge.delivery.settings.BrokerSettings`: URL,
    credentials, TLS (mqtts only; see :func:`make_ssl_context`), keepalive, protocol, QoS of events
    and stats (status is always QoS 1), reconnect back-off, ack timeout), validated here
    (ValueError naming the bad value). The queue: ``data_dir``: folder of the on-disk outbox
    (None: memory); ``max_queued`` (messages; 0 = no count bound) and ``queue_max_bytes``: its
    bounds; ``max_inflight``: unacknowledged messages at a time; ``flush_timeout``: default of
    ``close()``. ``outbox``/``rng``: an outbox and a random source to use instead (tests).
    Counters: see :attr:`counters`.
    """

    def __init__(
        self,
        settings,
        device_id,
        prefix=DEFAULT_PREFIX,
        data_dir=None,
        max_queued=DEFAULT_MAX_QUEUED,
        queue_max_bytes=DEFAULT_MAX_BYTES,
        max_inflight=DEFAULT_MAX_INFLIGHT,
        flush_timeout=DEFAULT_FLUSH_TIMEOUT,
        outbox=None,
        rng=None,
    ):
        s = self.settings = settings
        self.url = parse_url(s.url)
        self.device_id = check_device_id(device_id)
        self.prefix = prefix
        self.topics = topics(prefix, device_id)
        if s.qos not in (0, 1, 2):
            raise ValueError("qos must be 0, 1 or 2, got {!r}".format(s.qos))
        self.qos = s.qos
        self.client_id = s.client_id or default_client_id(device_id)
        self.keepalive = int(s.keepalive)
        if self.keepalive < 1:
            raise ValueError("keepalive must be >= 1 s, got {}".format(s.keepalive))
        self.ack_timeout = float(s.ack_timeout)  # 0: off
        if s.protocol not in PROTOCOLS:
            raise ValueError("MQTT protocol must be one of {}, got {!r}".format(", ".join(PROTOCOLS), s.protocol))
        self.protocol = s.protocol
        min_delay, max_delay = (float(v) for v in s.reconnect_delay)
        if not 0 < min_delay <= max_delay:
            raise ValueError("reconnect delays must satisfy 0 < min <= max, got {} and {}".format(min_delay, max_delay))
        self.reconnect_delay = (min_delay, max_delay)
        if int(max_inflight) < 1:
            raise ValueError("max_inflight must be >= 1, got {}".format(max_inflight))
        self.max_inflight = int(max_inflight)
        self.flush_timeout = float(flush_timeout)
        if not self.url.tls and (s.ca_certs or s.certfile or s.keyfile):
            raise ValueError("TLS files were given but the broker URL {} is not mqtts://".format(self.url.redacted()))
        self._ca_certs, self._certfile = s.ca_certs, s.certfile
        # TLS files are checked now, so that a bad setting stops the agent before it goes online.
        self._ssl_context = (
            make_ssl_context(self.url, s.ca_certs, s.certfile, s.keyfile, s.alpn, s.tls_insecure)
            if self.url.tls
            else None
        )
        if s.alpn and not self.url.tls:
            alpn_protocols(self.url, s.alpn)  # raises: ALPN needs mqtts://
        self._username, self._password = s.username, s.password
        if (s.username if s.username is not None else self.url.username) is None and (
            s.password if s.password is not None else self.url.password
        ) is not None:
            raise ValueError("a broker password needs a user name")
        if int(max_queued) < 0 or int(queue_max_bytes) < 0:
            raise ValueError(
                "queue bounds must be >= 0 (0: unbounded), got max_queued={} and queue_max_bytes={}".format(
                    max_queued, queue_max_bytes
                )
            )
        self._outbox = outbox
        self._latest = LatestValues()
        self._takeover = TakeoverWatch(self.client_id)
        self._self_disconnect = False  # the network thread dropped the connection itself (ack timeout)
        self._disconnect_reason = None  # the broker's DISCONNECT reason code (MQTT 5)
        self._outbox_args = (data_dir, int(max_queued), int(queue_max_bytes))
        self._rng = rng or random.Random()
        self._client = None
        self._mqtt = None
        self._thread = None
        self._lock = threading.Condition()
        self._wake = threading.Event()
        self._connected_event = threading.Event()
        self._session_up = False  # CONNACK accepted and not lost since (network thread)
        self._announce = False  # publish the online status (network thread)
        self._inflight = collections.OrderedDict()  # mid -> outbox seq, sent and not acknowledged
        self._progress_at = None  # when the in-flight set last moved (a send into an empty set, an ack)
        self._status_mids = {}  # mid -> topic: status and latest-value messages not yet acknowledged
        self._offline_mid = None  # the offline status published at close
        self._stale_status = None  # an offline status an earlier run could not send (sent before online)
        self._unsent_restored = False  # retained messages of an earlier run were restored from the queue
        self._early_acks = set()  # acks that arrived before publish() returned the mid
        self._early_refusals = set()  # of those, the ones the broker refused (MQTT 5 reason code)
        self._acked = []  # outbox seqs acknowledged, to delete (network thread)
        self._counts = {
            "published": 0,
            "acknowledged": 0,
            "dropped": 0,
            "failed": 0,
            "connects": 0,
            "reconnects": 0,
            "disconnects": 0,
            "connect_failures": 0,
        }
        self.last_error = None
        self._paho_error = None
        self._refusal = None
        self._warned_unreachable = False
        self._started = False
        self._closing = False
        self._closed = False
        self._deadline = 0.0  # when close() must be done (set by close())
        self._offline_sent = False

    def __repr__(self):
        return "MqttPublisher({}, device_id={!r}, prefix={!r})".format(self.url.redacted(), self.device_id, self.prefix)

    # -- lifecycle --

    def start(self):
        """Open the outbox, create the client, set the last will and start the network thread
        (never raises for an unreachable broker). Raises PahoMissingError without paho-mqtt."""
        if self._started:
            return
        mqtt = paho_client_module()
        client = create_client(
            self.url,
            self.client_id,
            clean_session=True,
            username=self._username,
            password=self._password,
            ssl_context=self._ssl_context,
            protocol=self.protocol,
        )
        if self.protocol == "5" and not hasattr(mqtt, "CallbackAPIVersion"):
            log.warning(
                "MQTT 5 with paho-mqtt %s: its on_publish gives no reason code, so a publish the broker "
                "refuses (ACL) still counts as acknowledged; paho-mqtt 2.x reports it",
                paho_version(),
            )
        client.max_inflight_messages_set(self.max_inflight + MAX_DIRECT_INFLIGHT)  # + status, latest values
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_log = self._on_log
        client.connect_async(self.url.host, self.url.port, self.keepalive)
        if self._outbox is None:
            data_dir, max_events, max_bytes = self._outbox_args
            path = queue_path(data_dir, self.device_id) if data_dir else None
            self._outbox = Outbox(path, max_events=max_events, max_bytes=max_bytes)
            if any("locked by another process" in problem for problem in self._outbox.problems):
                log.warning(
                    "another fer-edge agent on this host uses device id %r (its queue file %s is locked): "
                    "both publish under %s/%s/, their events interleave and each one's offline status "
                    "hides the other; give each agent its own device_id (--device-id, FER_EDGE_DEVICE_ID "
                    "or the config's device_id)",
                    self.device_id,
                    path,
                    self.prefix,
                    self.device_id,
                )
        # what the last run could not tell the broker: sent at the first connection
        self._stale_status, self._unsent_restored = restore_unsent(self._outbox, self._latest, self.topics.status)
        self._client = client
        self._mqtt = mqtt
        self._started = True
        log.info(
            "MQTT publisher %s connecting to %s as %s (outbox: %s)",
            self.device_id,
            self.url.redacted(),
            self.client_id,
            self._outbox.path or "memory",
        )
        self._thread = threading.Thread(target=self._run, name="fer-edge-mqtt")
        self._thread.daemon = True
        self._thread.start()

    def wait_connected(self, timeout=None):
        """Block until connected (True) or ``timeout`` seconds passed (False)."""
        return self._connected_event.wait(timeout)

    @property
    def connected(self):
        return self._connected_event.is_set()

    @property
    def outbox(self):
        return self._outbox

    @property
    def counters(self):
        """``published`` (accepted into the outbox), ``acknowledged`` (PUBACK received; QoS 0:
        written), ``dropped`` (oldest dropped at the outbox bounds, published after close, left
        in a memory outbox at close), ``failed`` (could not be serialized or published),
        ``queued``/``queued_bytes`` (in the outbox, in flight included), ``in_flight`` (sent,
        not acknowledged), ``connects``, ``reconnects``, ``disconnects`` (unexpected losses),
        ``connect_failures`` (attempts that failed), ``taken_over`` (connections the broker closed
        because another client used this client id, said or suspected). Status and latest-value
        messages are not counted."""
        outbox = self._outbox
        with self._lock:
            result = dict(self._counts)
            result["in_flight"] = len(self._inflight)
        result["taken_over"] = self._takeover.detected
        if outbox is not None:
            result["dropped"] += outbox.dropped
            result["queued"] = outbox.depth
            result["queued_bytes"] = outbox.size
        else:
            result["queued"] = result["queued_bytes"] = 0
        return result

    def delivery(self):
        """The ``delivery`` object of stats payloads (see stats.schema.json)."""
        counters = self.counters
        outbox = self._outbox
        return {
            "queued": counters["queued"],
            "queued_bytes": counters["queued_bytes"],
            "dropped": counters["dropped"],
            "failed": counters["failed"],
            "acknowledged": counters["acknowledged"],
            "reconnects": counters["reconnects"],
            "disconnects": counters["disconnects"],
            "taken_over": counters["taken_over"],
            "connected": self.connected,
            "storage": outbox.storage if outbox is not None else "memory",
        }

    def close(self, timeout=None):
        """Wait up to ``timeout`` s (default ``flush_timeout``) for the outbox to be acknowledged,
        publish the retained offline status, disconnect and stop the network thread. What is
        left stays in an on-disk outbox for the next start (in memory it is dropped).
        Idempotent."""
        timeout = self.flush_timeout if timeout is None else max(0.0, float(timeout))
        with self._lock:
            if self._closed or self._closing:
                return
            self._deadline = _monotonic() + timeout
            self._closing = True
        thread = self._thread
        if thread is not None:
            self._wake.set()
            thread.join(timeout + 3.0)
            if thread.is_alive():  # pragma: no cover - a connect attempt that hangs
                log.warning("MQTT network thread did not stop in time")
        with self._lock:
            self._closed = True
            self._connected_event.clear()
        outbox = self._outbox
        if outbox is None:
            return
        if thread is None or not thread.is_alive():
            outbox.persist()  # a queue that fell back to memory: what fits goes to disk now
        left = outbox.depth
        if left and outbox.storage == "memory":
            with self._lock:
                self._counts["dropped"] += left
            log.warning("MQTT publisher closed with %d unacknowledged message(s) dropped (memory queue)", left)
        elif left:
            log.warning(
                "MQTT publisher closed with %d message(s) queued in %s; they are sent at the next start",
                left,
                outbox.path,
            )
        if thread is None or not thread.is_alive():
            outbox.close()
        with self._lock:
            self._inflight.clear()
        log.info("MQTT publisher %s closed: %s", self.device_id, self.counters)

    # -- publishing (any thread) --

    def publish_event(self, event):
        if not self._check_open():
            return False
        seq, event_id = self._outbox.next_event()
        event = dict(event)
        event["seq"] = seq
        event["event_id"] = event_id
        return self._enqueue(self.topics.events, event)

    def publish_stats(self, stats):
        if not self._check_open():
            return False
        stats = dict(stats)
        stats.setdefault("delivery", self.delivery())
        return self._enqueue(self.topics.stats, stats)

    def publish_track(self, message):
        if not self._check_open():
            return False
        return self._enqueue(self.tracks_topic, message)

    def publish_retained(self, topic, payload):
        if not self._started:
            raise RuntimeError("MqttPublisher.start() must be called before publishing")
        if self._closing or self._closed:
            return False
        try:
            text = retained_text(payload)
        except (TypeError, ValueError) as exc:
            with self._lock:
                self._counts["failed"] += 1
            log.error("cannot serialize the retained message for %s: %s", topic, exc)
            return False
        self._latest.set(topic, text)
        self._wake.set()
        return True

    def _check_open(self):
        if not self._started:
            raise RuntimeError("MqttPublisher.start() must be called before publishing")
        if self._closing or self._closed:
            with self._lock:
                self._counts["dropped"] += 1
            return False
        return True

    def _enqueue(self, topic, obj):
        try:
            payload = to_json(obj)
        except (TypeError, ValueError) as exc:
            with self._lock:
                self._counts["failed"] += 1
            log.error("cannot serialize message for %s: %s", topic, exc)
            return False
        try:
            accepted = self._outbox.put(topic, payload, self.qos, False)
        except Exception as exc:  # the outbox handles SQLite errors; anything else is a bug
            with self._lock:
                self._counts["failed"] += 1
            log.exception("cannot queue message for %s: %s", topic, exc)
            return False
        if accepted:
            with self._lock:
                self._counts["published"] += 1
        return accepted


def default_client_id(device_id):
    """``fer-edge-<device_id>-<6 random hex digits>``: unique per publisher, so two agents (on one
    host they share the default device id, the host name) never knock each other off the broker."""
    import binascii
    import os

    return "fer-edge-{}-{}".format(device_id, binascii.hexlify(os.urandom(3)).decode("ascii"))
