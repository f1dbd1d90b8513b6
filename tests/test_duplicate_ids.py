"""Two agents on one host and one mosquitto: duplicate device ids and MQTT client ids.

A broker keeps one connection per client id and closes the older one when another client connects
with it (mosquitto: "already connected, closing old connection"). Agents used to default to the
same client id on one host (``fer-edge-<host name>``), so two of them knocked each other off in
turns. Now the default client id differs per process; a shared explicit client id is noticed and
named in a warning; a shared device id (same host, same queue folder) is warned about too.
"""

import json
import subprocess
import sys

import pytest

from edge.delivery.client import SESSION_TAKEN_OVER, TakeoverWatch
from edge.delivery.mqtt import MqttPublisher, default_client_id
from edge.delivery.settings import BrokerSettings
from fer_testdata import REPO
from helpers import wait_until
from mqtt_broker import mosquitto_fixture

broker = mosquitto_fixture(scope="function")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from fer_edge.samples import make_sample_video

    return make_sample_video(
        str(tmp_path_factory.mktemp("dup") / "one-face.mp4"), frames=240, width=320, height=240, faces=1
    )


def two_agents(video, url, args_a, args_b, timeout=300):
    """Start two `fer-edge run` at once; returns [(returncode, summary, stderr)] for both."""
    procs = []
    for args in (args_a, args_b):
        cmd = [
            sys.executable,
            "-m",
            "fer_edge",
            "run",
            "--quiet",
            "--log-level",
            "WARNING",
            "--source",
            video,
            "--broker",
            url,
            "--reconnect-min-delay",
            "0.2",
            "--reconnect-max-delay",
            "0.5",
        ] + args
        procs.append(subprocess.Popen(cmd, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        summary = json.loads(out.strip().splitlines()[-1])["summary"] if out.strip() else None
        results.append((proc.returncode, summary, err))
    return results


def test_default_client_ids_differ_per_process():
    ids = {default_client_id("door-cam") for _ in range(20)}
    assert len(ids) == 20 and all(i.startswith("fer-edge-door-cam-") for i in ids)
    assert (
        MqttPublisher(BrokerSettings("mqtt://127.0.0.1:1"), "door-cam").client_id
        != MqttPublisher(BrokerSettings("mqtt://127.0.0.1:1"), "door-cam").client_id
    )
    assert MqttPublisher(BrokerSettings("mqtt://127.0.0.1:1", client_id="door-cam"), "door-cam").client_id == "door-cam"


def test_two_agents_with_the_default_ids_stay_connected_and_the_shared_device_id_is_named(broker, video, tmp_path):
    """Same host name, hence the same default device id, and the same queue folder."""
    common = ["--device-id", "cam-twin", "--data-dir", str(tmp_path / "queue")]
    results = two_agents(video, broker.url, common, common)
    for returncode, summary, err in results:
        assert returncode == 0, err[-3000:]
        assert summary["delivery"]["reconnects"] == 0, summary  # nobody knocked off
    assert "already connected, closing old connection" not in broker.log_text()
    warned = [err for _, _, err in results if "another fer-edge agent on this host uses device id 'cam-twin'" in err]
    assert len(warned) == 1, [err[-600:] for _, _, err in results]  # the one that found the queue locked
    assert "give each agent its own device_id" in warned[0]


def test_two_agents_with_one_client_id_are_told_what_to_change(broker, video, tmp_path):
    results = two_agents(
        video,
        broker.url,
        ["--device-id", "cam-a", "--client-id", "shared-id", "--data-dir", str(tmp_path / "a")],
        ["--device-id", "cam-b", "--client-id", "shared-id", "--data-dir", str(tmp_path / "b")],
    )
    assert "Client shared-id already connected, closing old connection" in broker.log_text()  # the knock-offs
    warned = [err for _, _, err in results if "MQTT client id 'shared-id' seems to be used by another client" in err]
    assert warned, [err[-1500:] for _, _, err in results]
    assert "Give each agent its own client_id" in warned[0]
    for returncode, summary, err in results:
        assert returncode == 0, err[-3000:]  # knocked off, yet nothing lost: the outbox re-sends
        assert summary["delivery"]["dropped"] == summary["delivery"]["failed"] == 0
    assert sum(summary["delivery"]["reconnects"] for _, summary, _ in results) >= 3


def test_publishers_with_one_client_id_warn_once_and_mqtt5_reason_is_definite(broker, caplog):
    import logging

    caplog.set_level(logging.WARNING, logger="edge.delivery")  # whatever level an earlier test left it at
    pubs = [
        MqttPublisher(BrokerSettings(broker.url, client_id="same-id", reconnect_delay=(0.2, 0.5)), "cam-{}".format(i))
        for i in range(2)
    ]
    for pub in pubs:
        pub.start()
    wait_until(lambda: all(p.counters["taken_over"] for p in pubs), 20, step=0.1)
    for pub in pubs:
        pub.close(1)
    assert all(p.counters["taken_over"] >= 1 for p in pubs), [p.counters for p in pubs]
    # "seems to be used by" (3.1.1: the socket closed) or "is used by" (MQTT 5 reason 0x8E, when the broker sends it)
    warnings = [r.getMessage() for r in caplog.records if "used by another client" in r.getMessage()]
    assert 1 <= len(warnings) <= 2, warnings  # one per publisher, then at most every 60 s
    # the MQTT 5 reason code 0x8E names it at once (mosquitto 2.0.11 closes the socket without it)
    clock = [0.0]
    watch = TakeoverWatch("cam-x", clock=lambda: clock[0])
    watch.connected()
    clock[0] = 100.0
    assert "is used by another client" in watch.lost(SESSION_TAKEN_OVER)
    # a long session lost once, or a disconnect of our own, is no sign of it
    for self_initiated in (False, True):
        watch = TakeoverWatch("cam-y", clock=lambda: clock[0])
        for _ in range(5):
            watch.connected()
            clock[0] += 60.0 if not self_initiated else 1.0
            assert watch.lost(None, self_initiated=self_initiated) is None


def test_broker_restarts_soon_after_connecting_are_no_takeover(broker, caplog):
    """Issue 23, item 4. Three broker restarts, each within 10 s of the connection it ends: the
    broker was unreachable in between (connection refused), so this is an outage, not another
    client with this client id: no warning, ``taken_over`` stays 0."""
    import logging
    import time

    caplog.set_level(logging.WARNING, logger="edge.delivery")
    pub = MqttPublisher(BrokerSettings(broker.url, reconnect_delay=(0.2, 0.4)), "cam-restarts")
    pub.start()
    try:
        for restart in range(3):
            assert wait_until(lambda n=restart: pub.connected and pub.counters["connects"] == n + 1, 15), pub.counters
            time.sleep(0.5)
            broker.stop()
            assert wait_until(lambda n=restart: pub.counters["connect_failures"] > n, 10), pub.counters
            broker.start()
        assert wait_until(lambda: pub.connected and pub.counters["connects"] == 4, 15), pub.counters
        counters = pub.counters
    finally:
        pub.close(1)
    assert counters["reconnects"] == counters["disconnects"] == 3, counters
    warnings = [r.getMessage() for r in caplog.records if "used by another client" in r.getMessage()]
    assert warnings == [] and counters["taken_over"] == 0, (warnings, counters)
