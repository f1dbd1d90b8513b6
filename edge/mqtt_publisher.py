"""The MQTT publisher (paho-mqtt 1.x or 2.x, through :mod:`edge.mqtt_client`, the one module that
imports paho). Python 3.6 compatible.

MQTT behaviour (:class:`MqttPublisher`; docs/mqtt.md has the operator's view):

* client id ``fer-edge-<device_id>`` (override with ``client_id``; AWS IoT Core policies
  usually want the thing name), clean session, MQTT 3.1.1;
* every event and stats message goes to the **outbox** first (:mod:`edge.outbox`): on disk
  (SQLite in ``data_dir``) or, without ``data_dir``, in memory. Bounded (``max_queued``
  messages, ``queue_max_bytes`` bytes); beyond the bounds the oldest are dropped and counted;
* one network thread owns the paho client: it connects, sends the outbox oldest first with QoS 1
  (``qos``), at most ``max_inflight`` unacknowledged at a time, and deletes a row only when the
  broker's PUBACK for it arrived. Order: one TCP connection keeps the order, and after a
  reconnection paho re-sends the unacknowledged messages (DUP) before anything newer; after a
  restart the outbox is sent from its oldest row. Delivery is at-least-once: a message whose
  PUBACK was lost is sent again, with the same ``event_id``;
* events get ``seq`` and ``event_id`` (see :mod:`edge.outbox`); stats get a ``delivery``
  object (queue depth and bytes, dropped, reconnects, ...);
* ``start()`` never blocks and never fails because the broker is unreachable; the thread retries
  with exponential back-off and jitter (``reconnect_delay`` = (min, max) seconds;
  :func:`backoff_delay`);
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

from .events import status_payload, to_json
from .mqtt_client import (DEFAULT_KEEPALIVE, DEFAULT_RECONNECT_DELAY, PROTOCOLS, backoff_delay, create_client,
                          disconnect_rc, paho_client_module, paho_version, rc_text, rc_value, reason_failed)
from .mqtt_tls import alpn_protocols, describe_connect_problem, make_ssl_context
from .mqtt_url import DEFAULT_PREFIX, check_device_id, parse_url, topics
from .outbox import DEFAULT_MAX_BYTES, DEFAULT_MAX_EVENTS, Outbox, queue_path
from .publish import Publisher

log = logging.getLogger("edge.publish")

DEFAULT_MAX_QUEUED = DEFAULT_MAX_EVENTS
DEFAULT_ACK_TIMEOUT = 10.0    # s without any acknowledgement while messages are in flight: the link is dead
DEFAULT_MAX_INFLIGHT = 32
DEFAULT_FLUSH_TIMEOUT = 5.0
LOOP_TIMEOUT = 0.02  # seconds the network thread waits for traffic before looking at the outbox

_monotonic = time.monotonic


class MqttPublisher(Publisher):
    """Publishes events, stats and status to an MQTT broker (paho-mqtt 1.x or 2.x) through a
    bounded outbox (see the module doc).

    ``url``: ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...`` (text or MqttUrl).
    ``ca_certs``/``certfile``/``keyfile``/``alpn``/``tls_insecure``: TLS (mqtts only; see
    :func:`make_ssl_context`). ``username``/``password`` override the URL's. ``qos``: for events
    and stats (status is always QoS 1). ``data_dir``: folder of the on-disk outbox (None:
    memory). ``max_queued`` (messages; 0 = no count bound) and ``queue_max_bytes``: the outbox
    bounds. ``max_inflight``: unacknowledged messages at a time. ``reconnect_delay``:
    ``(min, max)`` seconds of the back-off. ``flush_timeout``: default of ``close()``.
    Counters: see :attr:`counters`.
    """

    def __init__(self, url, device_id, prefix=DEFAULT_PREFIX, qos=1, client_id=None,
                 username=None, password=None, ca_certs=None, certfile=None, keyfile=None,
                 keepalive=DEFAULT_KEEPALIVE, max_queued=DEFAULT_MAX_QUEUED,
                 reconnect_delay=DEFAULT_RECONNECT_DELAY, data_dir=None,
                 queue_max_bytes=DEFAULT_MAX_BYTES, max_inflight=DEFAULT_MAX_INFLIGHT,
                 flush_timeout=DEFAULT_FLUSH_TIMEOUT, tls_insecure=False, alpn=None,
                 outbox=None, rng=None, ack_timeout=DEFAULT_ACK_TIMEOUT, protocol="3.1.1"):
        self.url = parse_url(url)
        self.device_id = check_device_id(device_id)
        self.prefix = prefix
        self.topics = topics(prefix, device_id)
        if qos not in (0, 1, 2):
            raise ValueError("qos must be 0, 1 or 2, got {!r}".format(qos))
        self.qos = qos
        self.client_id = client_id or "fer-edge-" + device_id
        self.keepalive = int(keepalive)
        if self.keepalive < 1:
            raise ValueError("keepalive must be >= 1 s, got {}".format(keepalive))
        self.ack_timeout = float(ack_timeout)  # 0: off
        if protocol not in PROTOCOLS:
            raise ValueError("MQTT protocol must be one of {}, got {!r}".format(", ".join(PROTOCOLS), protocol))
        self.protocol = protocol
        min_delay, max_delay = (float(v) for v in reconnect_delay)
        if not 0 < min_delay <= max_delay:
            raise ValueError("reconnect delays must satisfy 0 < min <= max, got {} and {}".format(
                min_delay, max_delay))
        self.reconnect_delay = (min_delay, max_delay)
        if int(max_inflight) < 1:
            raise ValueError("max_inflight must be >= 1, got {}".format(max_inflight))
        self.max_inflight = int(max_inflight)
        self.flush_timeout = float(flush_timeout)
        if not self.url.tls and (ca_certs or certfile or keyfile):
            raise ValueError("TLS files were given but the broker URL {} is not mqtts://".format(
                self.url.redacted()))
        self._ca_certs, self._certfile = ca_certs, certfile
        # TLS files are checked now, so that a bad setting stops the agent before it goes online.
        self._ssl_context = (make_ssl_context(self.url, ca_certs, certfile, keyfile, alpn, tls_insecure)
                             if self.url.tls else None)
        if alpn and not self.url.tls:
            alpn_protocols(self.url, alpn)  # raises: ALPN needs mqtts://
        self._username, self._password = username, password
        if (username if username is not None else self.url.username) is None and \
                (password if password is not None else self.url.password) is not None:
            raise ValueError("a broker password needs a user name")
        if int(max_queued) < 0 or int(queue_max_bytes) < 0:
            raise ValueError("queue bounds must be >= 0 (0: unbounded), got max_queued={} and "
                             "queue_max_bytes={}".format(max_queued, queue_max_bytes))
        self._outbox = outbox
        self._outbox_args = (data_dir, int(max_queued), int(queue_max_bytes))
        self._rng = rng or random.Random()
        self._client = None
        self._mqtt = None
        self._thread = None
        self._lock = threading.Condition()
        self._wake = threading.Event()
        self._connected_event = threading.Event()
        self._session_up = False         # CONNACK accepted and not lost since (network thread)
        self._announce = False           # publish the online status (network thread)
        self._inflight = collections.OrderedDict()  # mid -> outbox seq, sent and not acknowledged
        self._progress_at = None         # when the in-flight set last moved (a send into an empty set, an ack)
        self._status_mids = set()        # online/offline status messages not yet acknowledged
        self._early_acks = set()         # acks that arrived before publish() returned the mid
        self._early_refusals = set()     # of those, the ones the broker refused (MQTT 5 reason code)
        self._acked = []                 # outbox seqs acknowledged, to delete (network thread)
        self._counts = {"published": 0, "acknowledged": 0, "dropped": 0, "failed": 0,
                        "connects": 0, "reconnects": 0, "disconnects": 0,
                        "connect_failures": 0}
        self.last_error = None
        self._paho_error = None
        self._refusal = None
        self._warned_unreachable = False
        self._started = False
        self._closing = False
        self._closed = False
        self._deadline = None
        self._offline_sent = False

    @classmethod
    def from_settings(cls, settings, device_id, prefix=DEFAULT_PREFIX, data_dir=None, max_queued=DEFAULT_MAX_QUEUED,
                      queue_max_bytes=DEFAULT_MAX_BYTES, flush_timeout=DEFAULT_FLUSH_TIMEOUT):
        """A publisher for one validated :class:`edge.mqtt_settings.BrokerSettings` and its queue."""
        return cls(settings.url, device_id, prefix=prefix, data_dir=data_dir, max_queued=max_queued,
                   queue_max_bytes=queue_max_bytes, flush_timeout=flush_timeout, **settings.publisher_options())

    def __repr__(self):
        return "MqttPublisher({}, device_id={!r}, prefix={!r})".format(
            self.url.redacted(), self.device_id, self.prefix)

    # -- lifecycle --

    def start(self):
        """Open the outbox, create the client, set the last will and start the network thread
        (never raises for an unreachable broker). Raises PahoMissingError without paho-mqtt."""
        if self._started:
            return
        mqtt = paho_client_module()
        client = create_client(self.url, self.client_id, clean_session=True, username=self._username,
                               password=self._password, ssl_context=self._ssl_context, protocol=self.protocol)
        if self.protocol == "5" and not hasattr(mqtt, "CallbackAPIVersion"):
            log.warning("MQTT 5 with paho-mqtt %s: its on_publish gives no reason code, so a publish the broker "
                        "refuses (ACL) still counts as acknowledged; paho-mqtt 2.x reports it", paho_version())
        will = status_payload(self.device_id, "offline", reason="connection-lost")
        client.will_set(self.topics.status, to_json(will), qos=1, retain=True)
        client.max_inflight_messages_set(self.max_inflight + 2)  # + online/offline status
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_log = self._on_log
        client.connect_async(self.url.host, self.url.port, self.keepalive)
        if self._outbox is None:
            data_dir, max_events, max_bytes = self._outbox_args
            path = queue_path(data_dir, self.device_id) if data_dir else None
            self._outbox = Outbox(path, max_events=max_events, max_bytes=max_bytes)
        self._client = client
        self._mqtt = mqtt
        self._started = True
        log.info("MQTT publisher %s connecting to %s as %s (outbox: %s)", self.device_id,
                 self.url.redacted(), self.client_id, self._outbox.path or "memory")
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
        ``connect_failures`` (attempts that failed). Status messages are not counted."""
        outbox = self._outbox
        with self._lock:
            result = dict(self._counts)
            result["in_flight"] = len(self._inflight)
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
        return {"queued": counters["queued"], "queued_bytes": counters["queued_bytes"],
                "dropped": counters["dropped"], "failed": counters["failed"],
                "acknowledged": counters["acknowledged"], "reconnects": counters["reconnects"],
                "disconnects": counters["disconnects"], "connected": self.connected,
                "storage": outbox.storage if outbox is not None else "memory"}

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
        left = outbox.depth
        if left and outbox.storage == "memory":
            with self._lock:
                self._counts["dropped"] += left
            log.warning("MQTT publisher closed with %d unacknowledged message(s) dropped (memory "
                        "queue)", left)
        elif left:
            log.warning("MQTT publisher closed with %d message(s) queued in %s; they are sent at "
                        "the next start", left, outbox.path)
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

    # -- the network thread --

    def _run(self):
        attempt = 0
        next_try = 0.0
        socket_open = False
        client = self._client
        try:
            while True:
                self._delete_acknowledged()
                now = _monotonic()
                if self._closing and self._finish(now, socket_open):
                    break
                if not socket_open:
                    if now < next_try:
                        self._wake.wait(min(next_try - now, 0.25))
                        self._wake.clear()
                        continue
                    try:
                        self._paho_error = None
                        client.reconnect()
                        socket_open = True
                    except Exception as exc:
                        attempt += 1
                        next_try = _monotonic() + backoff_delay(attempt, *self.reconnect_delay, rng=self._rng)
                        self._connect_failed(str(exc) or type(exc).__name__)
                        continue
                try:
                    rc = rc_value(client.loop(timeout=LOOP_TIMEOUT))
                except Exception as exc:  # paho 1.x lets TLS errors out of loop()
                    self._paho_error = str(exc) or type(exc).__name__
                    rc = -1
                if rc != 0:
                    socket_open = False
                    was_up = self._lost(rc)
                    attempt = 1 if was_up else attempt + 1
                    next_try = _monotonic() + backoff_delay(attempt, *self.reconnect_delay, rng=self._rng)
                    continue
                if self._session_up:
                    attempt = 0
                    if self._ack_overdue(_monotonic()):
                        client.disconnect()  # loop() then reports the loss; paho re-sends what is in flight
                        continue
                    self._service()
        except Exception:  # pragma: no cover - never die silently
            log.exception("MQTT network thread failed")
        finally:
            try:
                self._delete_acknowledged()
            except Exception:  # pragma: no cover
                log.exception("MQTT: cannot delete acknowledged messages")

    def _ack_overdue(self, now):
        """True (once per stall) when messages have waited ``ack_timeout`` s with no acknowledgement:
        a frozen broker or a half-open connection that keepalive would notice only much later."""
        with self._lock:
            if not self._inflight:
                self._progress_at = None
                return False
            if self._progress_at is None:
                self._progress_at = now
                return False
            if not self.ack_timeout or now - self._progress_at < self.ack_timeout:
                return False
            waited, self._progress_at = now - self._progress_at, None
            count = len(self._inflight)
        self._paho_error = "no acknowledgement from the broker for {:.0f} s with {} message(s) in flight".format(
            waited, count)
        return True

    def _delete_acknowledged(self):
        with self._lock:
            acked, self._acked = self._acked, []
        if acked:
            self._outbox.ack(acked)

    def _service(self):
        """Connected: announce online, delete acknowledged rows, send more of the outbox."""
        client = self._client
        if self._announce:
            self._announce = False
            if not self._closing:
                self._publish_status("online")
                self._connected_event.set()
        self._delete_acknowledged()
        room = self.max_inflight - len(self._inflight)
        if room <= 0:
            return
        for row in self._outbox.pending(room):
            try:
                info = client.publish(row.topic, row.payload, qos=row.qos, retain=row.retain)
            except Exception as exc:  # ValueError: payload too large for MQTT, bad topic
                with self._lock:
                    self._counts["failed"] += 1
                log.error("MQTT publish to %s failed: %s (message dropped)", row.topic, exc)
                self._outbox.mark_sent(row.seq)
                self._outbox.ack([row.seq])
                continue
            rc = rc_value(info.rc)
            if rc != self._mqtt.MQTT_ERR_SUCCESS and not (rc == self._mqtt.MQTT_ERR_NO_CONN and row.qos > 0):
                return  # not taken (QoS 0 while the connection drops): retried later
            self._outbox.mark_sent(row.seq)
            with self._lock:
                if info.mid in self._early_acks:
                    self._early_acks.discard(info.mid)
                    self._acked.append(row.seq)
                    refused = info.mid in self._early_refusals
                    self._early_refusals.discard(info.mid)
                    self._counts["failed" if refused else "acknowledged"] += 1
                else:
                    self._inflight[info.mid] = row.seq

    def _publish_status(self, state):
        payload = status_payload(self.device_id, state, **({"reason": "shutdown"} if state == "offline" else {}))
        try:
            info = self._client.publish(self.topics.status, to_json(payload), qos=1, retain=True)
        except Exception as exc:  # pragma: no cover
            log.error("cannot publish the %s status: %s", state, exc)
            return
        with self._lock:
            if info.mid in self._early_acks:
                self._early_acks.discard(info.mid)
            else:
                self._status_mids.add(info.mid)

    def _finish(self, now, socket_open):
        """Closing: True when the thread may stop (flushed or out of time; offline status sent
        and the client disconnected)."""
        deadline = self._deadline
        reserve = min(1.0, max(0.0, deadline - now) * 0.25) if not self._offline_sent else 0.0
        with self._lock:
            drained = not self._inflight and self._outbox.depth == 0 and not self._acked
            status_done = not self._status_mids
        if not self._offline_sent:
            if not (drained or now >= deadline - reserve):
                return False
            if not (socket_open and self._session_up):
                return True  # nothing to say offline to; the will covers it
            self._offline_sent = True
            self._publish_status("offline")
            return False
        if status_done or now >= deadline:
            try:
                self._client.disconnect()
                for _ in range(10):  # until DISCONNECT is written and the socket closed
                    if rc_value(self._client.loop(timeout=LOOP_TIMEOUT)) != 0:
                        break
            except Exception as exc:  # pragma: no cover
                log.debug("MQTT disconnect: %s", exc)
            return True
        return False

    def _connect_failed(self, text):
        with self._lock:
            self._counts["connect_failures"] += 1
            first, self._warned_unreachable = not self._warned_unreachable, True
        problem = describe_connect_problem(text, self.url, self._ca_certs, self._certfile)
        if problem.startswith("cannot connect") and (self.last_error or "").startswith("TLS:"):
            # A TLS rejection shows differently from one attempt to the next (an alert, an EOF,
            # a reset); keep the explanation until a connection succeeds.
            log.debug("MQTT: %s", problem)
            return
        self.last_error = problem
        (log.warning if first else log.debug)(
            "MQTT: %s; retrying in the background (messages are queued)", self.last_error)

    def _lost(self, rc):
        """The connection ended (or never came up): returns True if a session was up."""
        with self._lock:
            was_up, self._session_up = self._session_up, False
            self._connected_event.clear()
            if was_up and not self._closing:
                self._counts["disconnects"] += 1
        error, self._paho_error = self._paho_error, None
        refusal, self._refusal = self._refusal, None
        if refusal:  # CONNACK with an error code: bad credentials, client id not allowed, ...
            with self._lock:
                self._counts["connect_failures"] += 1
                first, self._warned_unreachable = not self._warned_unreachable, True
            self.last_error = refusal
            (log.warning if first else log.debug)("MQTT %s; retrying in the background", refusal)
        elif was_up:
            if not self._closing:
                self.last_error = ("connection to {} lost ({})".format(
                    self.url.redacted(), error or rc_text(rc)))
                log.warning("MQTT %s; queued messages wait for the reconnection", self.last_error)
        elif error:  # a handshake that failed after the TCP connection (TLS alerts)
            self._connect_failed(error)
        return was_up

    # -- paho callbacks (network thread; both paho 1.x and 2.x VERSION2 signatures) --

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        try:
            code = rc_value(rc)
            if code != 0:
                self._refusal = "connection to {} refused by the broker: {}".format(
                    self.url.redacted(), rc_text(rc, connack=True))
                return
            with self._lock:
                self._counts["connects"] += 1
                if self._counts["connects"] > 1:
                    self._counts["reconnects"] += 1
                self._session_up = True
            self._announce = True
            self.last_error = None
            self._warned_unreachable = False
            log.info("MQTT connected to %s", self.url.redacted())
        except Exception:  # pragma: no cover - never kill the network thread
            log.exception("error in MQTT on_connect")

    def _on_disconnect(self, client, userdata, *args):
        try:
            rc = disconnect_rc(args)
            if rc_value(rc) != 0 and not self._paho_error:
                self._paho_error = rc_text(rc)
        except Exception:  # pragma: no cover
            log.exception("error in MQTT on_disconnect")

    def _on_publish(self, client, userdata, mid, *args):
        try:
            reason = args[0] if args else None  # paho 2.x: the PUBACK's reason code (MQTT 5)
            refused = self.protocol == "5" and reason_failed(reason)
            with self._lock:
                seq = self._inflight.pop(mid, None)
                if seq is not None:
                    self._acked.append(seq)  # settled either way: a refusal is final, not retried
                    self._counts["failed" if refused else "acknowledged"] += 1
                    self._progress_at = _monotonic()
                elif mid in self._status_mids:
                    self._status_mids.discard(mid)
                else:
                    self._early_acks.add(mid)
                    if refused:
                        self._early_refusals.add(mid)
                self._lock.notify_all()
            if refused:
                self.last_error = "the broker refused a publish: {}".format(reason)
                log.error("MQTT publish refused by %s: %s (message counted as failed; an ACL that does not let "
                          "this client write under %s?)", self.url.redacted(), reason, self.topics.events)
        except Exception:  # pragma: no cover
            log.exception("error in MQTT on_publish")

    def _on_log(self, client, userdata, level, buf):
        try:
            # the first error since the last connection attempt is the cause; later ones
            # ("Client is not connected") are consequences
            if level == getattr(self._mqtt, "MQTT_LOG_ERR", 8) and self._paho_error is None:
                self._paho_error = buf
        except Exception:  # pragma: no cover
            pass
