"""Checks of settings that belong together: the broker URL with its TLS keys, the Home Assistant
prefix, the live view's certificate pair (Python 3.6 compatible)."""

from edge.config.options import PASSWORD_ENV, ConfigError
from edge.delivery.url import parse_url
from edge.events.homeassistant import check_discovery_prefix


def check_ha_prefix(config):
    """The Home Assistant discovery prefix of ``config``, with the key named on errors."""
    try:
        check_discovery_prefix(config["homeassistant_prefix"])
    except ValueError as exc:
        raise ConfigError("key 'homeassistant_prefix': {}".format(exc)) from exc


def refuse_url_password(url_text, where="key 'broker'"):
    """ConfigError when a broker URL carries a password (visible in `ps`, in config files and logs)."""
    try:
        url = parse_url(url_text)
    except ValueError as exc:
        raise ConfigError("{}: {}".format(where, exc)) from exc
    if url.password is not None:
        raise ConfigError(
            "{}: the broker URL {} holds a password; give the user name in the URL or 'username' "
            "and the password in a file (key 'password_file', mode 0600) or in ${}".format(
                where, url.redacted(), PASSWORD_ENV
            )
        )
    return url


def check_broker(config):
    """The broker URL and the TLS settings that go with it, with the key named on errors."""
    url = refuse_url_password(config["broker"])
    tls_keys = [k for k in ("ca_file", "cert_file", "key_file", "alpn") if config[k]] + (
        ["tls_insecure"] if config["tls_insecure"] else []
    )
    if tls_keys and not url.tls and config["alpn"].strip().lower() != "none":
        raise ConfigError(
            "key '{}': TLS settings need a broker URL with mqtts://, got {}".format(tls_keys[0], url.redacted())
        )
    if config["key_file"] and not config["cert_file"]:
        raise ConfigError("key 'key_file': a client key needs the client certificate (cert_file)")


VIEW_FILES = ("view_token_file", "view_cert_file", "view_key_file")  # the live view's files (must exist)


def check_view_tls(config):
    """The live view's certificate and key come together."""
    for key, other in (("view_cert_file", "view_key_file"), ("view_key_file", "view_cert_file")):
        if config[key] and not config[other]:
            raise ConfigError("key '{}': HTTPS for the live view needs both {} and {}".format(key, key, other))
