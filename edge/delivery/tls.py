"""TLS for MQTT: the SSL context (CA file or system CAs, client certificate and key, host name
check, ALPN for AWS IoT Core on port 443) and plain-language reasons why a connection failed.
Standard library only (no paho); Python 3.6 compatible.
"""

import logging
import os

from edge.delivery.url import parse_url

log = logging.getLogger(__name__)

AWS_ALPN = "x-amzn-mqtt-ca"


def alpn_protocols(url, alpn=None):
    """ALPN protocol list for ``url``: ``alpn`` None/empty = automatic (``x-amzn-mqtt-ca`` for
    an AWS IoT Core endpoint ``*.amazonaws.com`` on port 443, none otherwise); ``none`` = off;
    otherwise a comma-separated list."""
    url = parse_url(url)
    text = (alpn or "").strip()
    if text.lower() == "none":
        return []
    if text:
        protocols = [p.strip() for p in text.split(",") if p.strip()]
        if not url.tls:
            raise ValueError("ALPN ({}) needs a TLS broker URL (mqtts://), got {}".format(text, url.redacted()))
        return protocols
    if url.tls and url.port == 443 and url.host.lower().endswith(".amazonaws.com"):
        return [AWS_ALPN]
    return []


def make_ssl_context(url, ca_certs=None, certfile=None, keyfile=None, alpn=None, insecure=False):
    """An ``ssl.SSLContext`` for ``mqtts://``: server certificate verified against ``ca_certs``
    (None: the system CAs), host name verified (``insecure=True`` turns only the host name
    check off; for tests), client certificate ``certfile`` + ``keyfile`` (mutual TLS: AWS IoT
    Core, mosquitto ``require_certificate``), ALPN from :func:`alpn_protocols`.

    Raises ValueError naming the file when a file is missing or cannot be loaded.
    """
    import ssl

    url = parse_url(url)
    for what, path in (
        ("CA file (ca_file)", ca_certs),
        ("client certificate (cert_file)", certfile),
        ("client key (key_file)", keyfile),
    ):
        if path and not os.path.isfile(path):
            raise ValueError("TLS {} {} not found".format(what, path))
    if keyfile and not certfile:
        raise ValueError("TLS client key (key_file) {} given without a client certificate (cert_file)".format(keyfile))
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_certs or None)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ValueError(
            "TLS CA file (ca_file) {} cannot be loaded: {} (expected PEM certificates)".format(ca_certs, exc)
        ) from exc
    if certfile:
        try:
            context.load_cert_chain(certfile, keyfile or None)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ValueError(
                "TLS client certificate (cert_file) {} / key (key_file) {} cannot be "
                "loaded: {} (PEM files; is the key the certificate's?)".format(
                    certfile, keyfile or "(in the certificate file)", exc
                )
            ) from exc
    protocols = alpn_protocols(url, alpn)
    if protocols:
        if not getattr(ssl, "HAS_ALPN", False):
            raise ValueError("ALPN {} is needed but this Python's ssl module has no ALPN".format(",".join(protocols)))
        context.set_alpn_protocols(protocols)
    if insecure:
        context.check_hostname = False
        log.warning(
            "TLS host name verification is OFF (tls_insecure): anyone with a certificate "
            "from the CA can impersonate %s; use this for tests only",
            url.host,
        )
    return context


def describe_connect_problem(text, url, ca_certs=None, certfile=None):
    """A readable reason from the text of a connection exception or of paho's error log."""
    low = text.lower()
    where = parse_url(url).redacted()
    if "mismatch, certificate is not valid" in low or "doesn't match" in low or "hostname mismatch" in low:
        return (
            "TLS: the broker's certificate is not valid for the host name {} ({}); connect by a "
            "name the certificate lists".format(parse_url(url).host, text)
        )
    if "certificate verify failed" in low:
        return "TLS: the broker's certificate is not trusted by {} ({})".format(
            "ca_file " + ca_certs if ca_certs else "the system CA store", text
        )
    if "certificate required" in low or ("handshake failure" in low and not certfile):
        if certfile:
            return "TLS: the broker did not accept the client certificate {} ({})".format(certfile, text)
        return "TLS: the broker requires a client certificate (set cert_file and key_file) ({})".format(text)
    if parse_url(url).tls and ("eof occurred in violation of protocol" in low or "unexpected eof" in low):
        # TLS 1.3: the handshake ends on the client side before the broker checked the client
        # certificate; a broker that rejects it just closes the connection.
        if certfile:
            return (
                "TLS: the broker closed the connection right after the handshake: it probably does "
                "not accept the client certificate {} ({})".format(certfile, text)
            )
        return (
            "TLS: the broker closed the connection right after the handshake: it probably requires "
            "a client certificate (set cert_file and key_file) ({})".format(text)
        )
    if "unknown ca" in low or "bad certificate" in low or "certificate unknown" in low or "handshake failure" in low:
        return (
            "TLS: the broker rejected the client certificate {} (is it signed by a CA the broker "
            "trusts, and active?) ({})".format(certfile, text)
        )
    if "wrong version number" in low or "unknown protocol" in low or "record layer failure" in low:
        return "TLS: {} does not speak TLS on this port (use mqtt:// for a plain port) ({})".format(where, text)
    if "refused" in low:
        return "connection to {} refused (is the broker running and listening there?)".format(where)
    if (
        "name or service not known" in low
        or "nodename nor servname" in low
        or "temporary failure in name resolution" in low
    ):
        return "cannot resolve the broker host {} ({})".format(parse_url(url).host, text)
    if "timed out" in low:
        return "timed out connecting to {}".format(where)
    return "cannot connect to {}: {}".format(where, text)
