"""MQTT broker URLs and fer-edge topic names (Python 3.6 compatible, stdlib only).

Broker URLs::

    mqtt://[user[:password]@]host[:port]     plain TCP, default port 1883
    mqtts://[user[:password]@]host[:port]    TLS, default port 8883

User name and password are percent-decoded (``%40`` for ``@``, ``%3A`` for ``:``). IPv6 hosts
are written in brackets: ``mqtt://[::1]:1883``. The password never appears in ``repr()`` or
``redacted()``.

Topics: every device publishes under ``<prefix>/<device_id>/``::

    <prefix>/<device_id>/events    one emotion event per processed frame (QoS 1)
    <prefix>/<device_id>/status    retained online/offline status (also the last will)
    <prefix>/<device_id>/stats     periodic agent statistics
    <prefix>/<device_id>/tracks    face lifecycle: new, update, end per tracked face (QoS 1)
    <prefix>/<device_id>/state     retained: what the agent sees now (faces, dominant emotion)

The default prefix is ``fer-edge``. Device ids are one topic level: non-empty, without ``/``,
the MQTT wildcards ``+`` and ``#``, white space or control characters. A prefix may have
several levels (``site-a/fer-edge``) but no empty level, no wildcard and no leading ``$``.
"""

import collections
import re
from urllib.parse import unquote

DEFAULT_PREFIX = "fer-edge"
SCHEMES = {"mqtt": (1883, False), "mqtts": (8883, True)}
TOPIC_KINDS = ("events", "status", "stats", "tracks", "state")  # every kind an agent publishes under its id
MAX_DEVICE_ID_LENGTH = 128

_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")

# named MqttUrl for the repr
_UrlFields = collections.namedtuple("MqttUrl", "scheme host port username password tls")  # type: ignore[name-match]


class MqttUrl(_UrlFields):
    """A parsed broker URL: ``scheme host port username password tls`` (a namedtuple)."""

    __slots__ = ()

    def redacted(self):
        """The URL as text with the password replaced by ``***`` (safe to log)."""
        auth = ""
        if self.username is not None:
            auth = _quote_userinfo(self.username)
            if self.password is not None:
                auth += ":***"
            auth += "@"
        host = "[{}]".format(self.host) if ":" in self.host else self.host
        return "{}://{}{}:{}".format(self.scheme, auth, host, self.port)

    def __repr__(self):
        return "MqttUrl(scheme={!r}, host={!r}, port={!r}, username={!r}, password={}, tls={!r})".format(
            self.scheme, self.host, self.port, self.username, "None" if self.password is None else "'***'", self.tls
        )

    def __str__(self):
        return self.redacted()


def _quote_userinfo(text):
    return text.replace("%", "%25").replace("@", "%40").replace(":", "%3A").replace("/", "%2F")


def parse_url(url):
    """Parse a broker URL into an :class:`MqttUrl`; raise ValueError naming the bad part.

    An :class:`MqttUrl` is returned unchanged.
    """
    if isinstance(url, MqttUrl):
        return url
    if not isinstance(url, str):
        raise ValueError("broker URL must be a string like mqtt://host:1883, got {}".format(type(url).__name__))
    text = url.strip()
    if "://" not in text:
        raise ValueError(
            "broker URL {!r} has no scheme: expected mqtt://host[:port] or mqtts://host[:port]".format(_safe(text))
        )
    scheme, rest = text.split("://", 1)
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(
            "broker URL scheme {!r} is not supported: use mqtt:// (port 1883) or mqtts:// (TLS, port 8883)".format(
                scheme
            )
        )
    default_port, tls = SCHEMES[scheme]

    # Split off anything after the authority: only an empty path or "/" is accepted.
    netloc, tail = rest, ""
    for i, ch in enumerate(rest):
        if ch in "/?#":
            netloc, tail = rest[:i], rest[i:]
            break
    if tail not in ("", "/"):
        raise ValueError(
            "broker URL {!r}: unexpected path/query {!r} (topics are set by "
            "--prefix and the device id, not in the URL)".format(_safe(text), tail)
        )

    username = password = None
    if "@" in netloc:
        userinfo, hostport = netloc.rsplit("@", 1)
        if ":" in userinfo:
            user_raw, pass_raw = userinfo.split(":", 1)
            password = unquote(pass_raw)
        else:
            user_raw = userinfo
        username = unquote(user_raw)
        if not username:
            raise ValueError("broker URL {!r}: empty user name before '@'".format(_safe(text)))
    else:
        hostport = netloc

    port_text = None
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ValueError("broker URL {!r}: unterminated IPv6 host '['".format(_safe(text)))
        host = hostport[1:end]
        after = hostport[end + 1 :]
        if after:
            if not after.startswith(":"):
                raise ValueError("broker URL {!r}: unexpected {!r} after IPv6 host".format(_safe(text), after))
            port_text = after[1:]
    else:
        if hostport.count(":") > 1:
            raise ValueError(
                "broker URL {!r}: IPv6 hosts must be in brackets, e.g. mqtt://[::1]:1883".format(_safe(text))
            )
        if ":" in hostport:
            host, port_text = hostport.split(":", 1)
        else:
            host = hostport
    if not host:
        raise ValueError("broker URL {!r}: missing host (expected {}://host[:port])".format(_safe(text), scheme))
    if _BAD_CHARS.search(host):
        raise ValueError(
            "broker URL {!r}: host {!r} contains white space or control characters".format(_safe(text), host)
        )

    if port_text is None or port_text == "":
        if port_text == "":
            raise ValueError("broker URL {!r}: empty port after ':'".format(_safe(text)))
        port = default_port
    else:
        if not port_text.isdigit():
            raise ValueError("broker URL {!r}: port {!r} is not a number".format(_safe(text), port_text))
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError("broker URL {!r}: port {} is out of range 1..65535".format(_safe(text), port))
    return MqttUrl(scheme, host, port, username, password, tls)


def _safe(text):
    """``text`` with any password in the user info replaced by ``***``."""
    if "://" not in text:
        return text
    scheme, rest = text.split("://", 1)
    cut = len(rest)
    for i, ch in enumerate(rest):
        if ch in "/?#":
            cut = i
            break
    netloc, tail = rest[:cut], rest[cut:]
    if "@" in netloc:
        userinfo, hostport = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = userinfo + "@" + hostport
    return scheme + "://" + netloc + tail


def check_device_id(device_id):
    """Return ``device_id`` if it is usable as one topic level; raise ValueError otherwise."""
    if not isinstance(device_id, str):
        raise ValueError("device id must be a string, got {}".format(type(device_id).__name__))
    if not device_id:
        raise ValueError("device id must not be empty")
    for ch, what in (("+", "MQTT wildcard '+'"), ("#", "MQTT wildcard '#'"), ("/", "'/'")):
        if ch in device_id:
            raise ValueError("device id {!r} must not contain {}".format(device_id, what))
    if _BAD_CHARS.search(device_id):
        raise ValueError("device id {!r} must not contain white space or control characters".format(device_id))
    if len(device_id) > MAX_DEVICE_ID_LENGTH:
        raise ValueError("device id {!r} is longer than {} characters".format(device_id, MAX_DEVICE_ID_LENGTH))
    return device_id


def check_prefix(prefix):
    """Return ``prefix`` if it is a valid topic prefix; raise ValueError otherwise."""
    if not isinstance(prefix, str):
        raise ValueError("topic prefix must be a string, got {}".format(type(prefix).__name__))
    if not prefix:
        raise ValueError("topic prefix must not be empty")
    for ch in "+#":
        if ch in prefix:
            raise ValueError("topic prefix {!r} must not contain MQTT wildcard {!r}".format(prefix, ch))
    if prefix.startswith("$"):
        raise ValueError("topic prefix {!r} must not start with '$' (reserved by brokers)".format(prefix))
    if "" in prefix.split("/"):
        raise ValueError("topic prefix {!r} has an empty level (leading, trailing or double '/')".format(prefix))
    if _BAD_CHARS.search(prefix):
        raise ValueError("topic prefix {!r} must not contain white space or control characters".format(prefix))
    return prefix


Topics = collections.namedtuple("Topics", "events status stats")


def topics(prefix=DEFAULT_PREFIX, device_id=None):
    """The topics of one device: ``Topics(events, status, stats)`` (a namedtuple of str)."""
    if device_id is None:
        raise ValueError("device id must be given")
    base = "{}/{}".format(check_prefix(prefix), check_device_id(device_id))
    return Topics(base + "/events", base + "/status", base + "/stats")


def subscription_topics(prefix=DEFAULT_PREFIX, device_id="+", kinds=TOPIC_KINDS):
    """Topic filters for a subscriber: one per kind; ``device_id`` may be ``+`` (all devices)."""
    check_prefix(prefix)
    if device_id != "+":
        check_device_id(device_id)
    result = []
    for kind in kinds:
        if kind not in TOPIC_KINDS:
            raise ValueError("unknown topic kind {!r}: expected one of {}".format(kind, ", ".join(TOPIC_KINDS)))
        result.append("{}/{}/{}".format(prefix, device_id, kind))
    return result


def parse_topic(prefix, topic):
    """``(device_id, kind)`` of a fer-edge topic under ``prefix``; ``(None, None)`` otherwise."""
    head = prefix + "/"
    if not topic.startswith(head):
        return None, None
    parts = topic[len(head) :].split("/")
    if len(parts) != 2 or not parts[0] or parts[1] not in TOPIC_KINDS:
        return None, None
    return parts[0], parts[1]
