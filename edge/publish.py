"""Publishing agent messages: the :class:`Publisher` interface, an in-memory publisher and the
MQTT publisher (paho-mqtt 1.x or 2.x).

This is the only module of fer-edge that imports paho-mqtt, and only when an MQTT client is
created, so ``import edge.publish`` works without paho (``MemoryPublisher`` needs nothing).
Python 3.6 compatible.

MQTT behaviour (:class:`MqttPublisher`):

* client id ``fer-edge-<device_id>`` (override with ``client_id``), clean session, MQTT 3.1.1;
* events and stats with QoS 1 (``qos``), not retained;
* ``<prefix>/<device_id>/status``: a retained ``online`` status (QoS 1) on every (re)connect;
  the last will is a retained ``offline`` status with ``reason: connection-lost``; ``close()``
  publishes a retained ``offline`` status with ``reason: shutdown`` before disconnecting;
* ``start()`` never blocks and never fails because the broker is unreachable: the connection
  is made by paho's network thread (``connect_async`` + ``loop_start``), which reconnects with
  a back-off from 1 s to 30 s (``reconnect_delay``);
* while disconnected, QoS 1 messages wait in paho's **in-memory** queue and are sent, in order,
  after the (re)connection. The queue holds at most ``max_queued`` messages (default 10000;
  0 = unlimited); beyond that new messages are dropped and counted in ``dropped``. Nothing
  survives a restart of the agent (a durable on-disk queue is a later issue). QoS 0 messages
  published while disconnected are dropped;
* ``close(timeout)`` waits (bounded) until every QoS 1 message has been acknowledged by the
  broker, publishes the offline status, disconnects and stops the network thread.

Passwords never appear in logs or reprs.
"""

import logging
import threading
import time

from .events import status_payload, to_json
from .mqtt_url import DEFAULT_PREFIX, check_device_id, parse_url, topics

log = logging.getLogger(__name__)

PAHO_MISSING = "paho-mqtt is not installed: pip install 'paho-mqtt>=1.5,<3'"
DEFAULT_MAX_QUEUED = 10000
DEFAULT_RECONNECT_DELAY = (1, 30)
DEFAULT_KEEPALIVE = 30

_monotonic = time.monotonic


class PahoMissingError(ImportError):
    """paho-mqtt cannot be imported; the message says how to install it."""


def paho_client_module():
    """The ``paho.mqtt.client`` module, or PahoMissingError with the install command."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise PahoMissingError(PAHO_MISSING)
    return mqtt


def paho_version():
    """The installed paho-mqtt version text (raises PahoMissingError without it)."""
    paho_client_module()
    import paho.mqtt
    return getattr(paho.mqtt, "__version__", "unknown")


# --- helpers that hide the paho 1.x / 2.x callback differences --------------------------------

def rc_value(rc):
    """An int from a paho result/reason code (int in 1.x, ReasonCode in 2.x callbacks)."""
    value = getattr(rc, "value", rc)
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def rc_text(rc, connack=False):
    """Readable text of a result code: a paho 2.x ReasonCode, or a paho 1.x int that is a
    CONNACK code (``connack=True``) or a client error number (on_disconnect)."""
    if hasattr(rc, "getName"):
        return str(rc)
    try:
        mqtt = paho_client_module()
        if connack:
            return mqtt.connack_string(rc_value(rc))
        return mqtt.error_string(rc_value(rc))
    except Exception:
        return "code {}".format(rc)


def disconnect_rc(args):
    """The result code from the arguments after ``(client, userdata)`` of ``on_disconnect``.

    paho 1.x: ``(rc)`` or ``(rc, properties)``; paho 2.x VERSION2:
    ``(disconnect_flags, reason_code, properties)``.
    """
    if len(args) >= 3:
        return args[1]
    if args:
        return args[0]
    return 0


def subscribe_granted_ok(granted):
    """True if every granted QoS / reason code of a SUBACK is a success (< 0x80)."""
    return all(rc_value(g) < 0x80 for g in granted)


def create_client(url, client_id, clean_session=True, username=None, password=None,
                  ca_certs=None, certfile=None, keyfile=None, max_queued=DEFAULT_MAX_QUEUED,
                  reconnect_delay=DEFAULT_RECONNECT_DELAY):
    """A configured, unconnected paho client for ``url`` (text or MqttUrl).

    Uses ``CallbackAPIVersion.VERSION2`` on paho 2.x; callers write callbacks accepting both
    signatures (see :func:`disconnect_rc`). Credentials: ``username``/``password`` arguments
    win over those in the URL. TLS (``mqtts://``): ``tls_set(ca_certs, certfile, keyfile)``
    with certificate and host name verification on (``ca_certs`` None: the system CAs).
    Connect with ``client.connect_async(url.host, url.port, keepalive)`` + ``loop_start()``.
    """
    url = parse_url(url)
    mqtt = paho_client_module()
    kwargs = {"client_id": client_id, "clean_session": clean_session,
              "protocol": mqtt.MQTTv311}
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt >= 2.0
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
    else:
        client = mqtt.Client(**kwargs)
    user = username if username is not None else url.username
    secret = password if password is not None else url.password
    if user is not None:
        client.username_pw_set(user, secret)
    elif secret is not None:
        raise ValueError("a broker password needs a user name")
    if url.tls:
        import ssl
        client.tls_set(ca_certs=ca_certs, certfile=certfile, keyfile=keyfile,
                       cert_reqs=ssl.CERT_REQUIRED)
        client.tls_insecure_set(False)
    elif ca_certs or certfile or keyfile:
        raise ValueError("TLS files were given but the broker URL {} is not mqtts://".format(
            url.redacted()))
    client.max_queued_messages_set(int(max_queued))
    min_delay, max_delay = reconnect_delay
    client.reconnect_delay_set(min_delay=min_delay, max_delay=max_delay)
    return client


# --- the interface ----------------------------------------------------------------------------

class Publisher(object):
    """Where an agent sends its messages. Use as ``start()`` ... ``close()`` or ``with``."""

    device_id = None

    def start(self):
        """Begin publishing (connect in the background); returns at once."""
        raise NotImplementedError

    def publish_event(self, event):
        """Queue one emotion event dict; True if accepted. Never blocks on the network."""
        raise NotImplementedError

    def publish_stats(self, stats):
        """Queue one stats dict; True if accepted."""
        raise NotImplementedError

    def close(self, timeout=5.0):
        """Flush (at most ``timeout`` s), publish the offline status and disconnect."""
        raise NotImplementedError

    @property
    def connected(self):
        raise NotImplementedError

    @property
    def counters(self):
        """Delivery counters (dict of ints)."""
        return {}

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class MemoryPublisher(Publisher):
    """Keeps messages in lists (tests, ``--no-broker`` runs).

    ``events``, ``stats`` and ``statuses`` hold the messages as decoded JSON (each went through
    :func:`edge.events.to_json`, so unserializable values fail here as they would over MQTT);
    ``messages`` holds ``(topic, payload_text)`` in publish order.
    """

    def __init__(self, device_id="memory", prefix=DEFAULT_PREFIX):
        self.device_id = check_device_id(device_id)
        self.topics = topics(prefix, device_id)
        self.events = []
        self.stats = []
        self.statuses = []
        self.messages = []
        self._connected = False
        self._closed = False

    def _put(self, topic, obj, target):
        import json
        text = to_json(obj)
        self.messages.append((topic, text))
        target.append(json.loads(text))
        return True

    def start(self):
        if not self._connected and not self._closed:
            self._connected = True
            self._put(self.topics.status, status_payload(self.device_id, "online"), self.statuses)

    def publish_event(self, event):
        if self._closed:
            return False
        return self._put(self.topics.events, event, self.events)

    def publish_stats(self, stats):
        if self._closed:
            return False
        return self._put(self.topics.stats, stats, self.stats)

    def close(self, timeout=5.0):
        if self._closed:
            return
        self._closed = True
        if self._connected:
            self._put(self.topics.status,
                      status_payload(self.device_id, "offline", reason="shutdown"), self.statuses)
        self._connected = False

    @property
    def connected(self):
        return self._connected

    @property
    def counters(self):
        return {"published": len(self.events) + len(self.stats),
                "acknowledged": len(self.events) + len(self.stats),
                "dropped": 0, "failed": 0, "in_flight": 0,
                "connects": 1 if self.statuses else 0, "reconnects": 0, "disconnects": 0,
                "connect_failures": 0}


class MqttPublisher(Publisher):
    """Publishes events, stats and status to an MQTT broker (paho-mqtt 1.x or 2.x).

    ``url``: ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...`` (text or MqttUrl).
    ``ca_certs``/``certfile``/``keyfile``: TLS files (mqtts only). ``username``/``password``
    override the URL's. ``qos``: for events and stats (status is always QoS 1).
    ``max_queued``: paho in-memory queue bound (0 = unlimited). Counters: see
    :attr:`counters`. See the module doc for the connection and delivery behaviour.
    """

    def __init__(self, url, device_id, prefix=DEFAULT_PREFIX, qos=1, client_id=None,
                 username=None, password=None, ca_certs=None, certfile=None, keyfile=None,
                 keepalive=DEFAULT_KEEPALIVE, max_queued=DEFAULT_MAX_QUEUED,
                 reconnect_delay=DEFAULT_RECONNECT_DELAY):
        self.url = parse_url(url)
        self.device_id = check_device_id(device_id)
        self.prefix = prefix
        self.topics = topics(prefix, device_id)
        if qos not in (0, 1, 2):
            raise ValueError("qos must be 0, 1 or 2, got {!r}".format(qos))
        self.qos = qos
        self.client_id = client_id or "fer-edge-" + device_id
        self.keepalive = int(keepalive)
        self._client_options = {
            "username": username, "password": password, "ca_certs": ca_certs,
            "certfile": certfile, "keyfile": keyfile, "max_queued": max_queued,
            "reconnect_delay": tuple(reconnect_delay),
        }
        if not self.url.tls and (ca_certs or certfile or keyfile):
            raise ValueError("TLS files were given but the broker URL {} is not mqtts://".format(
                self.url.redacted()))
        self._client = None
        self._mqtt = None
        self._lock = threading.Condition()
        self._status_lock = threading.Lock()
        self._generation = 0       # changes on every connect and disconnect
        self._session_up = False   # CONNACK accepted and not disconnected since
        self._connected_event = threading.Event()
        self._pending = {}        # mid -> "data" | "status": sent, not yet acknowledged
        self._early_acks = set()  # acks that arrived before publish() returned the mid
        self._counts = {"published": 0, "acknowledged": 0, "dropped": 0, "failed": 0,
                        "connects": 0, "reconnects": 0, "disconnects": 0,
                        "connect_failures": 0}
        self.last_error = None
        self._warned_unreachable = False
        self._warned_drop = False
        self._started = False
        self._closed = False

    def __repr__(self):
        return "MqttPublisher({}, device_id={!r}, prefix={!r})".format(
            self.url.redacted(), self.device_id, self.prefix)

    # -- lifecycle --

    def start(self):
        """Create the client, set the last will and connect in the background (never raises
        for an unreachable broker). Raises PahoMissingError without paho-mqtt."""
        if self._started:
            return
        client = create_client(self.url, self.client_id, clean_session=True,
                               **self._client_options)
        will = status_payload(self.device_id, "offline", reason="connection-lost")
        client.will_set(self.topics.status, to_json(will), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        if hasattr(client, "on_connect_fail"):  # paho >= 1.6
            client.on_connect_fail = self._on_connect_fail
        self._client = client
        self._mqtt = paho_client_module()
        self._started = True
        log.info("MQTT publisher %s connecting to %s as %s", self.device_id,
                 self.url.redacted(), self.client_id)
        client.connect_async(self.url.host, self.url.port, self.keepalive)
        client.loop_start()

    def wait_connected(self, timeout=None):
        """Block until connected (True) or ``timeout`` seconds passed (False)."""
        return self._connected_event.wait(timeout)

    @property
    def connected(self):
        return self._connected_event.is_set()

    @property
    def counters(self):
        """``published`` (accepted by the client), ``acknowledged`` (PUBACK received; QoS 0:
        written), ``dropped`` (queue full, QoS 0 while disconnected, unacknowledged at close),
        ``failed`` (could not be serialized or published), ``in_flight``, ``connects``,
        ``reconnects``, ``disconnects`` (unexpected losses), ``connect_failures`` (attempts that
        failed; paho >= 1.6). Status messages are not counted."""
        with self._lock:
            result = dict(self._counts)
            result["in_flight"] = sum(1 for kind in self._pending.values() if kind == "data")
        return result

    def close(self, timeout=5.0):
        """Wait up to ``timeout`` s for every queued message to be acknowledged, publish the
        retained offline status, disconnect and stop the network thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        client = self._client
        if client is None:
            return
        timeout = max(0.0, float(timeout))
        deadline = _monotonic() + timeout
        # Keep a little of the time for the offline status.
        self._wait_pending(deadline - min(1.0, timeout * 0.25), "data")
        with self._status_lock:  # no online status can follow once _closed is set
            connected = self.connected
        if connected:
            payload = to_json(status_payload(self.device_id, "offline", reason="shutdown"))
            self._publish(self.topics.status, payload, 1, True, "status")
            self._wait_pending(deadline, "status")
        try:
            client.disconnect()
        except Exception as exc:  # pragma: no cover - defensive
            log.debug("MQTT disconnect: %s", exc)
        client.loop_stop()
        self._connected_event.clear()
        with self._lock:
            left = sum(1 for kind in self._pending.values() if kind == "data")
            self._counts["dropped"] += left
            self._pending.clear()
        if left:
            log.warning("MQTT publisher closed with %d unacknowledged message(s) dropped", left)
        log.info("MQTT publisher %s closed: %s", self.device_id, self.counters)

    def _wait_pending(self, deadline, kind):
        with self._lock:
            while any(k == kind for k in self._pending.values()):
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.5))
        return True

    # -- publishing --

    def publish_event(self, event):
        return self._publish_data(self.topics.events, event)

    def publish_stats(self, stats):
        return self._publish_data(self.topics.stats, stats)

    def _publish_data(self, topic, obj):
        if not self._started:
            raise RuntimeError("MqttPublisher.start() must be called before publishing")
        if self._closed:
            with self._lock:
                self._counts["dropped"] += 1
            return False
        try:
            payload = to_json(obj)
        except (TypeError, ValueError) as exc:
            with self._lock:
                self._counts["failed"] += 1
            log.error("cannot serialize message for %s: %s", topic, exc)
            return False
        return self._publish(topic, payload, self.qos, False, "data")

    def _publish(self, topic, payload, qos, retain, kind):
        mqtt = self._mqtt
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
        except Exception as exc:  # ValueError for oversized payloads, bad topics
            with self._lock:
                if kind == "data":
                    self._counts["failed"] += 1
            log.error("MQTT publish to %s failed: %s", topic, exc)
            return False
        rc = rc_value(info.rc)
        queued = rc == mqtt.MQTT_ERR_SUCCESS or (rc == mqtt.MQTT_ERR_NO_CONN and qos > 0)
        if not queued:
            with self._lock:
                if kind == "data":
                    self._counts["dropped"] += 1
                first, self._warned_drop = not self._warned_drop, True
            (log.warning if first else log.debug)(
                "MQTT message to %s dropped (%s); later drops are only counted", topic,
                "queue full" if rc == mqtt.MQTT_ERR_QUEUE_SIZE else mqtt.error_string(rc))
            return False
        with self._lock:
            if kind == "data":
                self._counts["published"] += 1
            if info.mid in self._early_acks:
                self._early_acks.discard(info.mid)
                if kind == "data":
                    self._counts["acknowledged"] += 1
            else:
                self._pending[info.mid] = kind
        return True

    # -- paho callbacks (both paho 1.x and 2.x VERSION2 signatures; never raise) --

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        try:
            code = rc_value(rc)
            if code != 0:
                self.last_error = rc_text(rc, connack=True)
                log.warning("MQTT connection to %s refused: %s", self.url.redacted(),
                            self.last_error)
                return
            with self._lock:
                self._counts["connects"] += 1
                if self._counts["connects"] > 1:
                    self._counts["reconnects"] += 1
                self._generation += 1
                generation = self._generation
                self._session_up = True
            self.last_error = None
            self._warned_unreachable = False
            log.info("MQTT connected to %s", self.url.redacted())
            # Publishing from inside on_connect can deadlock paho 1.5 (lock order between its
            # callback and message mutexes) when another thread publishes at the same time, so
            # the online status is sent from a short-lived thread.
            thread = threading.Thread(target=self._announce_online, args=(generation,),
                                      name="fer-edge-mqtt-online")
            thread.daemon = True
            thread.start()
        except Exception:  # pragma: no cover - never kill paho's thread
            log.exception("error in MQTT on_connect")

    def _announce_online(self, generation):
        try:
            with self._status_lock:
                if self._closed or generation != self._generation:
                    return  # closing, or this connection is already gone
                self._publish(self.topics.status,
                              to_json(status_payload(self.device_id, "online")), 1, True, "status")
                with self._lock:
                    if generation == self._generation:
                        self._connected_event.set()
        except Exception:  # pragma: no cover
            log.exception("cannot publish the MQTT online status")

    def _on_connect_fail(self, client, userdata, *args):
        try:
            with self._lock:
                self._counts["connect_failures"] += 1
                first, self._warned_unreachable = not self._warned_unreachable, True
            self.last_error = "cannot connect to {}".format(self.url.redacted())
            (log.warning if first else log.debug)(
                "MQTT broker %s unreachable; retrying in the background (events are queued in "
                "memory)", self.url.redacted())
        except Exception:  # pragma: no cover
            log.exception("error in MQTT on_connect_fail")

    def _on_disconnect(self, client, userdata, *args):
        try:
            rc = disconnect_rc(args)
            with self._lock:
                self._generation += 1
                was_connected, self._session_up = self._session_up, False
                self._connected_event.clear()
                unexpected = rc_value(rc) != 0 and not self._closed
                if unexpected and was_connected:
                    self._counts["disconnects"] += 1
            if unexpected and was_connected:  # (a refused CONNACK keeps its own last_error)
                self.last_error = rc_text(rc)
                log.warning("MQTT connection to %s lost (%s); queued messages wait for the "
                            "reconnection", self.url.redacted(), self.last_error)
        except Exception:  # pragma: no cover
            log.exception("error in MQTT on_disconnect")

    def _on_publish(self, client, userdata, mid, *args):
        try:
            with self._lock:
                kind = self._pending.pop(mid, None)
                if kind is None:
                    self._early_acks.add(mid)
                elif kind == "data":
                    self._counts["acknowledged"] += 1
                self._lock.notify_all()
        except Exception:  # pragma: no cover
            log.exception("error in MQTT on_publish")
