"""A few retained messages sent by a bare MQTT client, for administration (Python 3.6 compatible).

An agent's publisher (:class:`edge.delivery.mqtt.MqttPublisher`) announces a retained ``online``
status under its device id, leaves a last will and opens a queue file: fine for an agent, wrong
for a command that only removes retained values (Home Assistant's discovery configs:
``edge.events.homeassistant.remove_discovery``), which must leave nothing of its own on the broker.
:func:`publish_retained_once` connects with a clean session and no will, publishes, waits for
every acknowledgement, and disconnects.
"""

import os
import threading
import time
from typing import Any, List, Set

from edge.delivery.client import create_client, rc_text, rc_value
from edge.delivery.url import parse_url

CONNECT_KEEPALIVE = 30


def publish_retained_once(url, messages, client_id=None, timeout=10.0, **client_options):
    """Publish ``messages`` (``[(topic, payload bytes)]``; ``b""`` clears a retained value) retained
    with QoS 1 from a bare client, and return once the broker acknowledged each of them.

    ``client_id``: default ``fer-edge-admin-<random>``; ``client_options``: keyword arguments of
    :func:`edge.delivery.client.create_client` (``username``, ``password``, ``ca_certs``,
    ``certfile``, ``keyfile``, ``tls_insecure``, ``alpn``). ConnectionError, naming the broker,
    when it cannot be reached, refuses the connection, or has not acknowledged everything within
    ``timeout`` seconds.
    """
    url = parse_url(url)
    client = create_client(url, client_id or "fer-edge-admin-" + os.urandom(6).hex(), **client_options)
    done = threading.Condition()
    connacks: List[Any] = []  # the CONNACK's return code (paho 1.x int, 2.x ReasonCode)
    acked: Set[int] = set()

    def on_connect(client, userdata, flags, rc, *args):
        with done:
            connacks.append(rc)
            done.notify_all()

    def on_publish(client, userdata, mid, *args):
        with done:
            acked.add(mid)
            done.notify_all()

    client.on_connect = on_connect
    client.on_publish = on_publish
    deadline = time.monotonic() + timeout
    try:
        client.connect(url.host, url.port, CONNECT_KEEPALIVE)
    except (OSError, ValueError) as exc:
        raise ConnectionError("cannot connect to the broker {}: {}".format(url.redacted(), exc)) from exc
    client.loop_start()
    try:
        with done:
            done.wait_for(lambda: bool(connacks), max(0.0, deadline - time.monotonic()))
            connack = connacks[-1] if connacks else None
        if connack is None:
            raise ConnectionError(
                "the broker {} did not accept the connection within {} s".format(url.redacted(), timeout)
            )
        if rc_value(connack) != 0:
            raise ConnectionError("refused by the broker {}: {}".format(url.redacted(), rc_text(connack, connack=True)))
        mids = set(client.publish(topic, payload, qos=1, retain=True).mid for topic, payload in messages)
        with done:
            all_acked = done.wait_for(lambda: mids <= acked, max(0.0, deadline - time.monotonic()))
        if not all_acked:
            raise ConnectionError(
                "the broker {} acknowledged {} of {} messages within {} s".format(
                    url.redacted(), len(mids & acked), len(mids), timeout
                )
            )
    finally:
        client.disconnect()
        client.loop_stop()
    return len(mids)
