"""One validated value holding how to reach the broker: :class:`BrokerSettings`.

Built once from the agent's config (``from_config``: the URL parsed, a password in it refused,
TLS files checked, the password read from ``password_file`` or ``$FER_EDGE_PASSWORD``), then
handed whole to the MQTT publisher (``MqttPublisher(settings, device_id)``, which validates it)
and the subscriber (``client_options``), instead of two dozen keyword arguments at every call.
``BrokerSettings(url, **fields)`` takes the defaults below for the fields not given. The
password never appears in ``repr()``. Python 3.6 compatible, no paho.
"""

import collections
import os

from edge.delivery.client import DEFAULT_KEEPALIVE, DEFAULT_RECONNECT_DELAY

DEFAULT_ACK_TIMEOUT = 10.0  # s without any acknowledgement while messages are in flight: the link is dead

_Fields = collections.namedtuple(  # type: ignore[name-match]  # named for the repr
    "BrokerSettings",
    "url client_id username password ca_certs certfile keyfile alpn "
    "tls_insecure keepalive protocol qos reconnect_delay ack_timeout",
)
# url: mqtt://[user[:password]@]host[:port] or mqtts://... (text or MqttUrl); client_id: None for
# fer-edge-<device_id>-<random>; username/password override the URL's; ca_certs/certfile/keyfile/
# alpn/tls_insecure: TLS (mqtts only); keepalive s; protocol 3.1.1 or 5; qos of events and stats;
# reconnect_delay (min, max) s of the back-off; ack_timeout s (0: off).
_Fields.__new__.__defaults__ = (
    None,
    None,
    None,
    None,
    None,
    None,
    None,
    False,
    DEFAULT_KEEPALIVE,
    "3.1.1",
    1,
    DEFAULT_RECONNECT_DELAY,
    DEFAULT_ACK_TIMEOUT,
)


class BrokerSettings(_Fields):
    __slots__ = ()

    def __repr__(self):
        from edge.delivery.url import parse_url

        return "BrokerSettings(url={!r}, client_id={!r}, username={!r}, password={}, tls={}, protocol={!r})".format(
            parse_url(self.url).redacted(),
            self.client_id,
            self.username,
            "None" if self.password is None else "'***'",
            parse_url(self.url).tls,
            self.protocol,
        )

    def client_options(self):
        """Keyword arguments of ``edge.delivery.subscribe`` / ``edge.delivery.client.create_client``."""
        out = {
            "username": self.username,
            "password": self.password,
            "ca_certs": self.ca_certs,
            "certfile": self.certfile,
            "keyfile": self.keyfile,
            "alpn": self.alpn,
            "tls_insecure": self.tls_insecure,
        }
        return dict((k, v) for k, v in out.items() if v not in (None, False))


def from_config(config, env=None):
    """The broker settings of an agent config (``edge.config.agent.load_config``); ValueError naming
    the key on a bad value. The config must name a broker."""
    from edge.config.checks import refuse_url_password
    from edge.config.options import ConfigError
    from edge.config.secrets import broker_password

    if not config.get("broker"):
        raise ConfigError("key 'broker': no broker configured")
    refuse_url_password(config["broker"])
    for key in ("ca_file", "cert_file", "key_file", "password_file"):
        if config.get(key) and not os.path.isfile(config[key]):
            raise ConfigError("key '{}': file {} not found".format(key, config[key]))
    get = config.get
    return BrokerSettings(
        url=config["broker"],
        client_id=get("client_id") or None,
        username=get("username") or None,
        password=broker_password(config, env),
        ca_certs=get("ca_file") or None,
        certfile=get("cert_file") or None,
        keyfile=get("key_file") or None,
        alpn=get("alpn") or None,
        tls_insecure=bool(get("tls_insecure", False)),
        keepalive=int(get("keepalive", 10)),
        protocol=get("protocol", "3.1.1"),
        qos=int(get("qos", 1)),
        reconnect_delay=(float(get("reconnect_min_delay", 1.0)), float(get("reconnect_max_delay", 30.0))),
        ack_timeout=float(get("ack_timeout", 10.0)),
    )
