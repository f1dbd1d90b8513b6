"""The MQTT publisher's network thread: the one thread that owns the paho client (Python 3.6 compatible).

:class:`NetworkLoop` is the half of :class:`edge.delivery.mqtt.MqttPublisher` that runs on that
thread: connecting with back-off, sending the outbox (QoS 1, a bounded window, a row deleted only
on its PUBACK), the status and the latest-value messages, noticing a dead link (ack timeout) or
another client with this client id, the flush at close, and the paho callbacks (paho 1.x and 2.x
signatures). The other half (construction, ``start``/``close``, the ``publish_*`` calls any thread
makes, counters) is in :mod:`edge.delivery.mqtt`; both share the publisher's attributes.
"""

import collections
import logging
import random
import threading
import time
from typing import Any, Dict, List, Optional, Set, Tuple

from edge.delivery.client import TakeoverWatch, backoff_delay, disconnect_rc, rc_text, rc_value, reason_failed
from edge.delivery.outbox import Outbox
from edge.delivery.retained import LatestValues, keep_unsent
from edge.delivery.tls import describe_connect_problem
from edge.delivery.url import MqttUrl, Topics
from edge.events.payloads import status_payload, to_json

log = logging.getLogger(__name__)

LOOP_TIMEOUT = 0.02  # seconds the network thread waits for traffic before looking at the outbox
MAX_DIRECT_INFLIGHT = 8  # latest-value and status messages unacknowledged at a time

_monotonic = time.monotonic


class NetworkLoop(object):
    """The network-thread methods of the MQTT publisher (a mixin; see the module doc).

    The attributes below are the publisher's (set in ``MqttPublisher.__init__`` and ``start``),
    declared here for the methods of this half.
    """

    url: MqttUrl
    device_id: str
    topics: Topics
    protocol: str
    ack_timeout: float
    reconnect_delay: Tuple[float, float]
    max_inflight: int
    last_error: Optional[str]
    _ca_certs: Optional[str]
    _certfile: Optional[str]
    _outbox: Outbox
    _latest: LatestValues
    _takeover: TakeoverWatch
    _rng: random.Random
    _client: Any  # paho.mqtt.client.Client, once started
    _mqtt: Any  # the paho.mqtt.client module, once started
    _lock: threading.Condition
    _wake: threading.Event
    _connected_event: threading.Event
    _session_up: bool
    _announce: bool
    _self_disconnect: bool
    _disconnect_reason: Any
    _inflight: "collections.OrderedDict[int, int]"
    _progress_at: Optional[float]
    _status_mids: Dict[int, str]
    _offline_mid: Optional[int]
    _stale_status: Optional[bytes]
    _unsent_restored: bool
    _early_acks: Set[int]
    _early_refusals: Set[int]
    _acked: List[int]
    _counts: Dict[str, int]
    _paho_error: Optional[str]
    _refusal: Optional[str]
    _warned_unreachable: bool
    _closing: bool
    _deadline: float  # set by close(), before _closing
    _offline_sent: bool

    # -- the loop --

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
                        self._set_will()
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
                        self._self_disconnect = True
                        client.disconnect()  # loop() then reports the loss; paho re-sends what is in flight
                        continue
                    self._service()
        except Exception:  # pragma: no cover - never die silently
            log.exception("MQTT network thread failed")
        finally:
            try:
                self._delete_acknowledged()
                self._keep_unconfirmed()
            except Exception:  # pragma: no cover
                log.exception("MQTT: cannot delete acknowledged messages or keep the unsent retained ones")

    def _keep_unconfirmed(self):
        """The thread ends: what the broker did not confirm (the offline status of this stop, latest
        values) goes into the queue file for the next start (:func:`edge.delivery.retained.keep_unsent`)."""
        with self._lock:
            unacknowledged = set(self._status_mids.values())
            confirmed = self._offline_mid is not None and self._offline_mid not in self._status_mids
        offline = None if confirmed else to_json(status_payload(self.device_id, "offline", reason="shutdown"))
        keep_unsent(self._outbox, self._latest, self.topics.status, offline, unacknowledged)

    def _set_will(self):
        """The last will of the next connection: a retained ``offline`` status, ``reason:
        connection-lost``, stamped with the time of this connection attempt (a will cannot say when
        the connection is lost: the broker publishes it as given; it used to carry the start time)."""
        will = status_payload(self.device_id, "offline", reason="connection-lost")
        self._client.will_set(self.topics.status, to_json(will), qos=1, retain=True)

    def _ack_overdue(self, now):
        """True (once per stall) when messages have waited ``ack_timeout`` s with no acknowledgement:
        a frozen broker or a half-open connection that keepalive would notice only much later. The
        clock counts connected time only: it starts again when a connection is lost or made."""
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
            waited, count
        )
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
                stale, self._stale_status = self._stale_status, None
                if stale:  # the offline status an earlier run could not send: first, with its time
                    self._publish_status("offline", stale)
                self._publish_status("online")
                self._latest.resend_all()
                self._connected_event.set()
                if self._unsent_restored:  # sent now (and kept again at close if not confirmed)
                    self._unsent_restored = False
                    self._outbox.keep_unsent_retained([])
        self._send_latest()
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

    def _send_latest(self):
        """Send the latest values not sent yet (retained, QoS 1), a few at a time."""
        with self._lock:
            room = MAX_DIRECT_INFLIGHT - 1 - len(self._status_mids)  # one place kept for the status
        for topic, text in self._latest.take(room):
            try:
                info = self._client.publish(topic, text, qos=1, retain=True)
            except Exception as exc:  # ValueError: a bad topic or a payload too large
                with self._lock:
                    self._counts["failed"] += 1
                log.error("MQTT retained publish to %s failed: %s", topic, exc)
                continue
            with self._lock:
                if info.mid in self._early_acks:
                    self._early_acks.discard(info.mid)
                else:
                    self._status_mids[info.mid] = topic

    def _publish_status(self, state, text=None):
        """Publish the retained status (``text``: a payload made earlier); returns its mid (None if
        it could not be published)."""
        if text is None:
            payload = status_payload(self.device_id, state, **({"reason": "shutdown"} if state == "offline" else {}))
            text = to_json(payload)
        try:
            info = self._client.publish(self.topics.status, text, qos=1, retain=True)
        except Exception as exc:  # pragma: no cover
            log.error("cannot publish the %s status: %s", state, exc)
            return None
        with self._lock:
            if info.mid in self._early_acks:
                self._early_acks.discard(info.mid)
            else:
                self._status_mids[info.mid] = self.topics.status
        return info.mid

    def _finish(self, now, socket_open):
        """Closing: True when the thread may stop (flushed or out of time; offline status sent
        and the client disconnected)."""
        deadline = self._deadline
        reserve = min(1.0, max(0.0, deadline - now) * 0.25) if not self._offline_sent else 0.0
        with self._lock:
            drained = not self._inflight and self._outbox.depth == 0 and not self._acked and not self._latest.pending
            status_done = not self._status_mids
        if not self._offline_sent:
            if not (drained or now >= deadline - reserve):
                return False
            if not (socket_open and self._session_up):
                return True  # nothing to say offline to: the will covers a lost connection, the rest is kept
            self._offline_sent = True
            self._offline_mid = self._publish_status("offline")
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
        self._takeover.unreachable()
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
            "MQTT: %s; retrying in the background (messages are queued)", self.last_error
        )

    def _lost(self, rc):
        """The connection ended (or never came up): returns True if a session was up."""
        with self._lock:
            was_up, self._session_up = self._session_up, False
            self._connected_event.clear()
            self._progress_at = None  # the outage is no silence of the broker's: the clock starts again
            if was_up and not self._closing:
                self._counts["disconnects"] += 1
        error, self._paho_error = self._paho_error, None
        refusal, self._refusal = self._refusal, None
        reason, self._disconnect_reason = self._disconnect_reason, None
        self_initiated, self._self_disconnect = self._self_disconnect, False
        if not was_up:  # an attempt that did not reach CONNACK: an outage, not a takeover
            self._takeover.unreachable()
        if refusal:  # CONNACK with an error code: bad credentials, client id not allowed, ...
            with self._lock:
                self._counts["connect_failures"] += 1
                first, self._warned_unreachable = not self._warned_unreachable, True
            self.last_error = refusal
            (log.warning if first else log.debug)("MQTT %s; retrying in the background", refusal)
        elif was_up:
            if not self._closing:
                self.last_error = "connection to {} lost ({})".format(self.url.redacted(), error or rc_text(rc))
                log.warning("MQTT %s; queued messages wait for the reconnection", self.last_error)
                warning = self._takeover.lost(reason, self_initiated)
                if warning:
                    self.last_error = warning
                    log.warning("%s", warning)
        elif error:  # a handshake that failed after the TCP connection (TLS alerts)
            self._connect_failed(error)
        return was_up

    # -- paho callbacks (network thread; both paho 1.x and 2.x VERSION2 signatures) --

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        try:
            code = rc_value(rc)
            if code != 0:
                self._refusal = "connection to {} refused by the broker: {}".format(
                    self.url.redacted(), rc_text(rc, connack=True)
                )
                return
            with self._lock:
                self._counts["connects"] += 1
                if self._counts["connects"] > 1:
                    self._counts["reconnects"] += 1
                self._session_up = True
                self._progress_at = None  # what is in flight (re-sent now) waits from this connection on
            self._takeover.connected()
            self._announce = True
            self.last_error = None
            self._warned_unreachable = False
            log.info("MQTT connected to %s", self.url.redacted())
        except Exception:  # pragma: no cover - never kill the network thread
            log.exception("error in MQTT on_connect")

    def _on_disconnect(self, client, userdata, *args):
        try:
            rc = disconnect_rc(args)
            if rc_value(rc) != 0:
                self._disconnect_reason = rc
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
                    del self._status_mids[mid]
                else:
                    self._early_acks.add(mid)
                    if refused:
                        self._early_refusals.add(mid)
                self._lock.notify_all()
            if refused:
                self.last_error = "the broker refused a publish: {}".format(reason)
                log.error(
                    "MQTT publish refused by %s: %s (message counted as failed; an ACL that does not let "
                    "this client write under %s?)",
                    self.url.redacted(),
                    reason,
                    self.topics.events,
                )
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
