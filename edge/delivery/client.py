"""The MQTT client: the one module of fer-edge that imports paho-mqtt (1.x or 2.x), and only
when a client is created, so every other module imports without paho. Python 3.6 compatible.

paho 1.x/2.x compatibility (the callback API version, reason codes as ints or objects, the
disconnect callback's arguments), reconnection back-off, and :func:`create_client` (a configured,
unconnected client with credentials and TLS) for the publisher and the subscriber.
"""

import logging
import random
import time

from edge.delivery.tls import make_ssl_context
from edge.delivery.url import parse_url

log = logging.getLogger(__name__)

PAHO_MISSING = "paho-mqtt is not installed: pip install 'paho-mqtt>=1.5,<3'"
DEFAULT_RECONNECT_DELAY = (1, 30)
DEFAULT_KEEPALIVE = 10  # s; paho notices a silent broker after 1.5x this


class PahoMissingError(ImportError):
    """paho-mqtt cannot be imported; the message says how to install it."""


def paho_client_module():
    """The ``paho.mqtt.client`` module, or PahoMissingError with the install command."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise PahoMissingError(PAHO_MISSING) from None
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


def backoff_delay(attempt, min_delay, max_delay, rng=random):
    """Seconds to wait before reconnection attempt ``attempt`` (1, 2, ...): exponential
    (``min_delay * 2**(attempt-1)``, capped at ``max_delay``) with "equal jitter": a uniform
    draw from the upper half, so that devices that lost the same broker do not come back in
    step, and never less than half the exponential delay."""
    base = min(float(max_delay), float(min_delay) * (2 ** min(max(attempt - 1, 0), 30)))
    return rng.uniform(base / 2.0, base)


# --- TLS --------------------------------------------------------------------------------------

PROTOCOLS = ("3.1.1", "5")


def reason_failed(reason):
    """True when an MQTT 5 reason code (paho 2.x ReasonCode or int) says the broker refused."""
    if reason is None:
        return False
    failure = getattr(reason, "is_failure", None)
    if failure is not None:
        return bool(failure)
    try:
        return int(getattr(reason, "value", reason)) >= 0x80
    except (TypeError, ValueError):
        return False


def create_client(
    url,
    client_id,
    clean_session=True,
    username=None,
    password=None,
    ca_certs=None,
    certfile=None,
    keyfile=None,
    max_queued=0,
    reconnect_delay=DEFAULT_RECONNECT_DELAY,
    tls_insecure=False,
    alpn=None,
    ssl_context=None,
    protocol="3.1.1",
):
    """A configured, unconnected paho client for ``url`` (text or MqttUrl).

    Uses ``CallbackAPIVersion.VERSION2`` on paho 2.x; callers write callbacks accepting both
    signatures (see :func:`disconnect_rc`). Credentials: ``username``/``password`` arguments
    win over those in the URL. TLS (``mqtts://``): ``ssl_context`` or one from
    :func:`make_ssl_context`. Connect with ``client.connect_async(url.host, url.port,
    keepalive)`` + ``loop_start()`` (the subscriber) or your own loop (the publisher).
    """
    url = parse_url(url)
    mqtt = paho_client_module()
    if protocol not in PROTOCOLS:
        raise ValueError("MQTT protocol must be one of {}, got {!r}".format(", ".join(PROTOCOLS), protocol))
    if protocol == "5":  # MQTT 5 has clean_start at connect time instead of clean_session
        kwargs = {"client_id": client_id, "protocol": mqtt.MQTTv5}
    else:
        kwargs = {"client_id": client_id, "clean_session": clean_session, "protocol": mqtt.MQTTv311}
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
        if ssl_context is None:
            ssl_context = make_ssl_context(url, ca_certs, certfile, keyfile, alpn, tls_insecure)
        client.tls_set_context(ssl_context)
        client.tls_insecure_set(not ssl_context.check_hostname)
    elif ca_certs or certfile or keyfile:
        raise ValueError("TLS files were given but the broker URL {} is not mqtts://".format(url.redacted()))
    client.max_queued_messages_set(int(max_queued))
    min_delay, max_delay = reconnect_delay
    client.reconnect_delay_set(min_delay=min_delay, max_delay=max_delay)
    return client


# --- another client with the same client id -----------------------------------------------------

SESSION_TAKEN_OVER = 0x8E  # MQTT 5 DISCONNECT reason code: another client connected with this id
SHORT_SESSION = 10.0  # s: a connection the broker closes sooner than this counts as knocked off
SHORT_SESSIONS_TO_WARN = 3  # in a row (MQTT 3.1.1 brokers just close the socket: no reason given)
WARN_EVERY = 60.0  # s between repeated warnings


class TakeoverWatch(object):
    """Notices a second client with the same MQTT client id.

    A broker keeps one connection per client id: when another client connects with it, the older
    connection is closed (MQTT 5: a DISCONNECT with reason code 0x8E, "Session taken over"; MQTT
    3.1.1: the socket is just closed). Two agents sharing an id therefore knock each other off in
    turns: many reconnections, and each shows offline (its last will) while the other is connected.
    :meth:`lost` returns the warning to log when that is happening: at once on reason 0x8E, or
    after ``repeats`` connections in a row closed by the broker within ``short`` seconds of being
    made; then at most every ``every`` seconds. A connection attempt that fails in between (the
    broker unreachable or refusing: :meth:`unreachable`) breaks the row: the broker restarted or
    the network went away, while a client that takes the id over leaves the broker up, so the next
    attempt succeeds at once. (A broker restarted faster than the first reconnection attempt, 0.5
    to 1 s by default, cannot be told apart; three of those in a row, each within ``short`` s of
    connecting, still count.)
    """

    def __init__(self, client_id, short=SHORT_SESSION, repeats=SHORT_SESSIONS_TO_WARN, every=WARN_EVERY, clock=None):
        self.client_id = client_id
        self.short = float(short)
        self.repeats = int(repeats)
        self.every = float(every)
        self.clock = clock or time.monotonic
        self.started = None
        self.streak = 0
        self.detected = 0  # connections lost to another client (suspected or said), since start
        self._warned_at = None

    def connected(self):
        self.started = self.clock()

    def unreachable(self):
        """A connection attempt failed (refused, unreachable, closed before CONNACK): an outage,
        not another client with this id; the row of short connections starts again."""
        self.streak = 0

    def lost(self, reason=None, self_initiated=False):
        """The connection (up since :meth:`connected`) ended; ``reason``: the broker's reason code
        (MQTT 5) if any. Returns the warning text, or None."""
        now = self.clock()
        started, self.started = self.started, None
        if self_initiated or started is None:
            self.streak = 0
            return None
        said = rc_value(reason) == SESSION_TAKEN_OVER if reason is not None else False
        self.streak = self.streak + 1 if now - started < self.short else 0
        if not (said or self.streak >= self.repeats):
            return None
        self.detected += 1
        if self._warned_at is not None and now - self._warned_at < self.every:
            return None
        self._warned_at = now
        why = (
            "the broker closed the connection with reason 'Session taken over'"
            if said
            else "the broker closed {} connections in a row within {:.0f} s of accepting them (if nothing else uses "
            "this id, the broker is closing them for another reason: AWS IoT Core does on a publish its "
            "policy refuses)".format(self.streak, self.short)
        )
        return (
            "MQTT client id {!r} {} another client at the same time: {}. A broker keeps one connection "
            "per client id, so the two knock each other off in turns (reconnections, and each shows offline "
            "while the other is connected). Give each agent its own client_id, or leave client_id unset (the "
            "default, fer-edge-<device_id>-<random>, differs per process), and its own device_id if they share "
            "that too".format(self.client_id, "is used by" if said else "seems to be used by", why)
        )
