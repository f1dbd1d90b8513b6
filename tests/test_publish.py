"""MQTT publishing against a real mosquitto on 127.0.0.1 (skipped without the binary).

Covers: ordered QoS 1 delivery of schema-valid events, retained online/offline status, the last
will on an abrupt kill, a broker that is down when the agent starts (and an outage later),
TLS with host name verification, the subscriber output, URL/topic errors and running without
paho-mqtt. Written for Python 3.6 too (run with paho-mqtt 1.x there).
"""

import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge.delivery.base import MemoryPublisher
from edge.delivery.client import PAHO_MISSING, PahoMissingError
from edge.delivery.mqtt import MqttPublisher
from edge.delivery.settings import BrokerSettings
from edge.delivery.url import DEFAULT_PREFIX, MqttUrl, parse_topic, parse_url, subscription_topics, topics
from edge.events.payloads import face_entry, load_schema, make_event, stats_payload
from edge.labels import EMOTIONS
from fer_edge.subscribe_lines import format_event_lines, run_subscriber
from helpers import RawInbox, collect, wait_until
from mqtt_broker import Mosquitto, free_port, mosquitto_fixture, running_mosquitto, sample_event

REPO = Path(__file__).resolve().parents[1]
from mqtt_broker import PROBS  # noqa: E402

WAIT = 10.0  # generous upper bound for things that take milliseconds

broker = mosquitto_fixture(scope="module")


@pytest.fixture(scope="module")
def validators():
    jsonschema = pytest.importorskip("jsonschema")
    return dict((name, jsonschema.Draft7Validator(load_schema(name))) for name in ("emotion-event", "status", "stats"))


event = sample_event


def listen(url, device, kinds=("events", "status", "stats"), **kwargs):
    return collect(url, device, WAIT, kinds=kinds, **kwargs)


def retained_status(url, device):
    """The retained status of ``device`` as a fresh subscriber sees it."""
    sub, got = listen(url, device, kinds=("status",))
    try:
        return got.wait(lambda ms: ms)[0]
    finally:
        sub.stop()


# --- delivery ---------------------------------------------------------------------------------


def test_events_arrive_in_order_and_match_schema(broker, validators):
    device, n = "cam-order", 60
    sub, got = listen(broker.url, device)
    pub = MqttPublisher(BrokerSettings(broker.url), device)
    try:
        pub.start()
        assert pub.wait_connected(WAIT)
        for i in range(n):
            assert pub.publish_event(event(device, i, faces=i % 3)) is True
        assert pub.publish_stats(stats_payload(device, 12.5, {"detect": 10.0}, n, n)) is True
        pub.close(timeout=WAIT)
        got.wait(
            lambda ms: (
                sum(m.kind == "events" for m in ms) >= n
                and any(m.kind == "status" and m.data["state"] == "offline" for m in ms)
            )
        )
    finally:
        pub.close()
        sub.stop()
    events = got.of_kind("events")
    assert [m.data["frame"] for m in events] == list(range(n))
    for m in events:
        assert m.topic == "fer-edge/cam-order/events" and m.device_id == device and m.qos == 1
        assert not m.retain
        assert list(validators["emotion-event"].iter_errors(m.data)) == []
        assert m.payload.decode("utf-8") == json.dumps(m.data, sort_keys=True, separators=(",", ":"))
    stats = got.of_kind("stats")
    assert len(stats) == 1 and list(validators["stats"].iter_errors(stats[0].data)) == []
    states = [m.data["state"] for m in got.of_kind("status")]
    assert states == ["online", "offline"]
    for m in got.of_kind("status"):
        assert list(validators["status"].iter_errors(m.data)) == []
    counters = pub.counters
    assert counters["published"] == counters["acknowledged"] == n + 1
    assert counters["dropped"] == counters["failed"] == counters["in_flight"] == 0
    assert counters["connects"] == 1 and counters["reconnects"] == 0
    assert not pub.connected


def test_retained_online_then_offline_status_for_late_subscribers(broker, validators):
    device = "cam-retained"
    pub = MqttPublisher(BrokerSettings(broker.url), device)
    pub.start()
    try:
        assert pub.wait_connected(WAIT)
        online = retained_status(broker.url, device)
        assert online.retain and online.topic == "fer-edge/cam-retained/status"
        assert online.data["state"] == "online" and online.data["device_id"] == device
        assert list(validators["status"].iter_errors(online.data)) == []
    finally:
        pub.close()
    offline = retained_status(broker.url, device)
    assert offline.retain and offline.data["state"] == "offline"
    assert offline.data["reason"] == "shutdown"
    pub.close()  # idempotent


KILLED_AGENT = """
import sys, time
from edge.delivery.mqtt import MqttPublisher
from edge.delivery.settings import BrokerSettings
pub = MqttPublisher(BrokerSettings(sys.argv[1], keepalive=5), sys.argv[2])
pub.start()
if not pub.wait_connected(20):
    sys.exit(3)
print("ready", flush=True)
time.sleep(120)
"""


def test_last_will_is_published_when_the_agent_dies(broker, validators):
    device = "cam-killed"
    sub, got = listen(broker.url, device, kinds=("status",))
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    agent = subprocess.Popen(
        [sys.executable, "-c", KILLED_AGENT, broker.url, device],
        cwd=str(REPO),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
    )
    try:
        line = agent.stdout.readline()
        assert line.strip() == "ready", agent.stderr.read() if agent.poll() is not None else line
        got.wait(lambda ms: any(m.data["state"] == "online" for m in ms))
        agent.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker must publish the will
        agent.wait(WAIT)
        msgs = got.wait(lambda ms: any(m.data["state"] == "offline" for m in ms))
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        agent.stdout.close()
        agent.stderr.close()
        sub.stop()
    will = [m for m in msgs if m.data["state"] == "offline"][0]
    assert will.data["reason"] == "connection-lost" and will.data["device_id"] == device
    assert list(validators["status"].iter_errors(will.data)) == []
    late = retained_status(broker.url, device)
    assert late.retain and late.data["state"] == "offline"
    assert late.data["reason"] == "connection-lost"


def _epoch(timestamp):
    """Seconds since the epoch of a payload timestamp (``2026-12-02T10:15:02.480Z``)."""
    from datetime import datetime, timezone

    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def test_the_last_will_carries_the_time_of_its_connection_not_the_start(tmp_path, validators):
    """Issue 23, item 6. The agent starts with the broker down and connects 2 s later: the last will
    the broker publishes when the agent dies says when that connection was made (the will is set
    anew before every connection attempt); it used to carry the time the agent started."""
    device = "cam-will-time"
    mosq = Mosquitto(tmp_path / "broker")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    agent = subprocess.Popen(
        [sys.executable, "-c", KILLED_AGENT, mosq.url, device],
        cwd=str(REPO),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
    )
    sub = None
    try:
        time.sleep(2.0)  # the agent tries, the broker is not there
        broker_up = time.time()
        mosq.start()
        sub, got = listen(mosq.url, device, kinds=("status",))
        line = agent.stdout.readline()
        assert line.strip() == "ready", agent.stderr.read() if agent.poll() is not None else line
        got.wait(lambda ms: any(m.data["state"] == "online" for m in ms))
        agent.send_signal(signal.SIGKILL)
        agent.wait(WAIT)
        msgs = got.wait(lambda ms: any(m.data["state"] == "offline" for m in ms))
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        agent.stdout.close()
        agent.stderr.close()
        if sub is not None:
            sub.stop()
        mosq.stop()
    will = [m for m in msgs if m.data["state"] == "offline"][0]
    assert will.data["reason"] == "connection-lost" and list(validators["status"].iter_errors(will.data)) == []
    assert _epoch(will.data["timestamp"]) >= broker_up - 0.1, (will.data["timestamp"], broker_up)


def test_a_stop_while_the_broker_is_down_is_set_right_at_the_next_start(tmp_path, validators):
    """Issue 23, item 6. The broker crashes (its retained store saved: ``online``, ``faces 4``) and
    the agent stops before it could reconnect: no one can tell the broker, and its restart brings
    back ``online`` and 4 faces (the documented limit). The agent kept what it could not send in
    its queue file; its next start sends it at the first connection: the ``offline`` status of the
    stop (with the stop's time) before its own ``online``, and the state of the stop (0 faces)."""
    device = "cam-stale"
    status_topic, state_topic = "fer-edge/{}/status".format(device), "fer-edge/{}/state".format(device)
    data_dir = str(tmp_path / "data")
    mosq = Mosquitto(tmp_path / "broker", persistence=True)
    mosq.start()
    settings = BrokerSettings(mosq.url, reconnect_delay=(0.2, 0.5))
    pub = MqttPublisher(settings, device, data_dir=data_dir)
    pub.start()
    try:
        assert pub.wait_connected(WAIT)
        inbox = RawInbox(mosq.url, "stale-watch-1", [state_topic])
        pub.publish_state({"faces": 4})
        inbox.wait(lambda: inbox.data(state_topic) == [{"faces": 4}], WAIT, "the state")
        inbox.stop()
        db = Path(str(tmp_path / "broker" / "mosquitto.db"))
        os.kill(mosq.process.pid, signal.SIGUSR1)  # the broker saves its retained store, then crashes
        assert wait_until(db.exists)
        time.sleep(0.3)
        os.kill(mosq.process.pid, signal.SIGKILL)
        mosq.process.wait(WAIT)
        mosq.stop()
        assert wait_until(lambda: not pub.connected)
        pub.publish_state({"faces": 0})  # what the agent does when it stops
        stopped_at = time.time()
        pub.close(timeout=0.5)
    finally:
        pub.close(timeout=0)
    mosq.start()
    try:
        before = RawInbox(mosq.url, "stale-watch-2", [status_topic, state_topic])
        before.wait(lambda: before.of(status_topic) and before.of(state_topic), WAIT, "the retained messages")
        before.stop()
        assert before.data(status_topic)[0]["state"] == "online" and before.data(state_topic) == [{"faces": 4}]
        watch = RawInbox(mosq.url, "stale-watch-3", [status_topic, state_topic])
        watch.wait(lambda: watch.of(status_topic) and watch.of(state_topic), WAIT, "the retained messages")
        again = MqttPublisher(settings, device, data_dir=data_dir)  # the next start; it sends no state itself
        again.start()
        try:
            assert again.wait_connected(WAIT)
            watch.wait(lambda: len(watch.of(status_topic)) >= 3 and len(watch.of(state_topic)) >= 2, WAIT, "news")
            time.sleep(0.3)
            statuses, states = watch.data(status_topic), watch.data(state_topic)
            assert again.outbox.unsent_retained() == []  # sent: not again at the start after this one
        finally:
            watch.stop()
            again.close()
    finally:
        mosq.stop()
    assert [s["state"] for s in statuses] == ["online", "offline", "online"], statuses
    offline = statuses[1]
    assert offline["reason"] == "shutdown" and list(validators["status"].iter_errors(offline)) == []
    assert abs(_epoch(offline["timestamp"]) - stopped_at) < 1.0, (offline, stopped_at)
    assert states == [{"faces": 4}, {"faces": 0}], states


def test_broker_down_at_start_and_outage_then_queued_events_are_delivered(tmp_path, validators):
    """The (memory) outbox: events published while the broker is down arrive afterwards."""
    device = "cam-outage"
    mosq = Mosquitto(tmp_path / "broker", persistence=True)  # keeps the subscriber's session
    mosq.start()
    try:
        # A persistent subscriber session collects QoS 1 events while the subscriber is away.
        sub, _ = listen(mosq.url, device, kinds=("events",), client_id="outage-listener", clean_session=False)
        sub.stop()
        mosq.stop()

        pub = MqttPublisher(BrokerSettings(mosq.url, reconnect_delay=(1, 2)), device)
        try:
            pub.start()  # broker down: must neither raise nor block
            assert not pub.wait_connected(0.3)
            for i in range(5):
                assert pub.publish_event(event(device, i)) is True
            assert pub.counters["queued"] == 5 and pub.counters["acknowledged"] == 0
            assert pub.counters["in_flight"] == 0  # nothing is handed to paho while disconnected

            mosq.start()
            assert pub.wait_connected(WAIT)
            assert wait_until(lambda: pub.counters["acknowledged"] == 5), pub.counters

            # An outage while running: the loss is noticed, events queue, reconnect delivers.
            mosq.stop()
            assert wait_until(lambda: not pub.connected), "disconnect not noticed"
            for i in range(5, 8):
                assert pub.publish_event(event(device, i)) is True
            mosq.start()
            assert wait_until(lambda: pub.counters["acknowledged"] == 8), pub.counters
            counters = pub.counters
            assert counters["reconnects"] == 1 and counters["disconnects"] == 1
        finally:
            pub.close(timeout=WAIT)
        assert pub.counters["dropped"] == 0

        sub, got = listen(mosq.url, device, kinds=("events",), client_id="outage-listener", clean_session=False)
        try:
            msgs = got.wait(lambda ms: len(ms) >= 8)
        finally:
            sub.stop()
        assert [m.data["frame"] for m in msgs] == list(range(8))
        for m in msgs:
            assert list(validators["emotion-event"].iter_errors(m.data)) == []
    finally:
        mosq.stop()


def test_publishing_while_connecting_does_not_deadlock(broker):
    """The agent publishes from its own thread while paho connects: publishing the online
    status inside on_connect deadlocked paho 1.5 here about once in five connections."""
    device, n = "cam-busy", 200
    for _ in range(5):
        pub = MqttPublisher(BrokerSettings(broker.url), device)
        pub.start()
        worker = threading.Thread(
            target=lambda pub=pub: [pub.publish_event(event(device, i, faces=0)) for i in range(n)]
        )
        worker.daemon = True
        worker.start()
        worker.join(WAIT)
        assert not worker.is_alive(), "publish_event blocked (deadlock with paho's thread?)"
        pub.close(timeout=WAIT)
        assert pub.counters["acknowledged"] == n, pub.counters


def test_close_is_bounded_when_the_broker_never_comes(validators):
    pub = MqttPublisher(BrokerSettings("mqtt://127.0.0.1:{}".format(free_port())), "cam-nobroker")
    pub.start()
    for i in range(3):
        pub.publish_event(event("cam-nobroker", i))
    started = time.monotonic()
    pub.close(timeout=0.5)
    assert time.monotonic() - started < 3.0
    counters = pub.counters
    assert counters["published"] == 3 and counters["dropped"] == 3 and counters["in_flight"] == 0
    assert pub.publish_event(event("cam-nobroker", 3)) is False  # after close: dropped


def test_in_memory_queue_is_bounded():
    """Beyond the bound the oldest are dropped (and counted); the newest are kept."""
    pub = MqttPublisher(BrokerSettings("mqtt://127.0.0.1:{}".format(free_port())), "cam-full", max_queued=3)
    pub.start()
    try:
        accepted = [pub.publish_event(event("cam-full", i)) for i in range(5)]
        assert accepted == [True] * 5
        assert pub.counters["dropped"] == 2 and pub.counters["queued"] == 3
        frames = [json.loads(r.payload.decode("utf-8"))["frame"] for r in pub.outbox.pending(10)]
        assert frames == [2, 3, 4]
    finally:
        pub.close(timeout=0)
    assert pub.counters["dropped"] == 5  # a memory outbox loses what is left at close


def test_publish_before_start_is_an_error():
    pub = MqttPublisher(BrokerSettings("mqtt://127.0.0.1:1"), "cam-x")
    with pytest.raises(RuntimeError, match="start"):
        pub.publish_event(event("cam-x", 0))


def test_unserializable_event_is_counted_as_failed(broker):
    pub = MqttPublisher(BrokerSettings(broker.url), "cam-nan")
    pub.start()
    try:
        assert pub.wait_connected(WAIT)
        assert pub.publish_event({"bad": float("nan")}) is False
        assert pub.counters["failed"] == 1 and pub.counters["published"] == 0
    finally:
        pub.close()


# --- TLS --------------------------------------------------------------------------------------


def _openssl(*args, cwd):
    subprocess.check_call(("openssl",) + args, cwd=str(cwd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_certificates(folder):
    """A CA and a server certificate for DNS:localhost (not for 127.0.0.1)."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=fer-edge test CA",
        cwd=folder,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
        cwd=folder,
    )
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        cwd=folder,
    )
    return folder / "ca.crt", folder / "server.crt", folder / "server.key"


def test_tls_with_host_name_verification(tmp_path):
    if subprocess.call("command -v openssl", shell=True, stdout=subprocess.DEVNULL) != 0:
        pytest.skip("openssl command not installed")
    ca, cert, key = make_certificates(tmp_path / "certs")
    conf = "cafile {}\ncertfile {}\nkeyfile {}".format(ca, cert, key)
    with running_mosquitto(tmp_path / "broker", extra_conf=conf) as mosq:
        good = "mqtts://localhost:{}".format(mosq.port)
        sub, got = listen(good, "cam-tls", kinds=("events",), ca_certs=str(ca))
        pub = MqttPublisher(BrokerSettings(good, ca_certs=str(ca)), "cam-tls")
        try:
            pub.start()
            assert pub.wait_connected(WAIT), pub.last_error
            pub.publish_event(event("cam-tls", 0))
            assert got.wait(lambda ms: ms)[0].data["frame"] == 0
        finally:
            pub.close()
            sub.stop()
        # Same broker, but the certificate does not name 127.0.0.1: refused.
        wrong_name = MqttPublisher(
            BrokerSettings("mqtts://127.0.0.1:{}".format(mosq.port), ca_certs=str(ca), reconnect_delay=(1, 1)),
            "cam-tls2",
        )
        wrong_name.start()
        try:
            assert not wrong_name.wait_connected(1.5)
        finally:
            wrong_name.close(timeout=0.2)


def test_credentials_from_the_url_and_no_secret_in_logs(tmp_path, caplog):
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not os.access(tool, os.X_OK):
        pytest.skip("mosquitto_passwd not installed")
    passwords = tmp_path / "passwd"
    subprocess.check_call([tool, "-b", "-c", str(passwords), "agent", "s3cr:t@x"])
    conf = "allow_anonymous false\npassword_file {}".format(passwords)
    caplog.set_level(logging.DEBUG)
    with running_mosquitto(tmp_path / "broker", extra_conf=conf) as mosq:
        good = "mqtt://agent:s3cr%3At%40x@127.0.0.1:{}".format(mosq.port)
        sub, got = listen(good, "cam-auth", kinds=("events",))
        pub = MqttPublisher(BrokerSettings(good), "cam-auth")
        try:
            pub.start()
            assert pub.wait_connected(WAIT), pub.last_error
            pub.publish_event(event("cam-auth", 0))
            got.wait(lambda ms: ms)
        finally:
            pub.close()
            sub.stop()
        bad = MqttPublisher(
            BrokerSettings("mqtt://agent:wrong@127.0.0.1:{}".format(mosq.port), reconnect_delay=(1, 1)), "cam-auth2"
        )
        bad.start()
        try:
            assert not bad.wait_connected(1.0)
            assert "auth" in (bad.last_error or "").lower(), bad.last_error
        finally:
            bad.close(timeout=0)
        anonymous = MqttPublisher(
            BrokerSettings("mqtt://127.0.0.1:{}".format(mosq.port), username="agent", password="s3cr:t@x"), "cam-auth3"
        )
        anonymous.start()
        try:
            assert anonymous.wait_connected(WAIT), "username/password arguments not used"
        finally:
            anonymous.close()
    text = caplog.text + repr(pub) + repr(bad) + repr(pub.url)
    assert "s3cr" not in text and "wrong" not in text


# --- subscriber output ------------------------------------------------------------------------


def _subscriber_thread(url, device, json_mode, n):
    out, ready, result = io.StringIO(), threading.Event(), {}

    def run():
        result["n"] = run_subscriber(
            url,
            device,
            DEFAULT_PREFIX,
            json_mode,
            out=out,
            max_messages=n,
            timeout=WAIT,
            kinds=("events",),
            ready=ready,
        )

    thread = threading.Thread(target=run)
    thread.start()
    assert ready.wait(WAIT)
    return thread, out, result


@pytest.mark.parametrize("json_mode", [False, True], ids=["human", "json"])
def test_run_subscriber_prints_events(broker, json_mode):
    device = "cam-print-json" if json_mode else "cam-print"
    thread, out, result = _subscriber_thread(broker.url, device, json_mode, 3)
    sent = [event(device, 0, faces=2), event(device, 1, faces=0), event(device, 2, faces=1)]
    pub = MqttPublisher(BrokerSettings(broker.url), device)
    pub.start()
    try:
        for e in sent:
            pub.publish_event(e)
    finally:
        pub.close()
    thread.join(WAIT)
    assert result["n"] == 3
    lines = out.getvalue().splitlines()
    if json_mode:
        received = [json.loads(line) for line in lines]
        assert [r["seq"] for r in received] == [1, 2, 3]
        assert len(set(r["event_id"] for r in received)) == 3
        for r in received:
            del r["seq"], r["event_id"]
        assert received == sent
        return
    ts = sent[0]["timestamp"]
    assert lines[0] == "{} cam-print frame 0 track 0 happiness 0.70 box 0,20,48,48".format(ts)
    assert lines[1] == "{} cam-print frame 0 track 1 happiness 0.70 box 10,20,48,48".format(ts)
    assert re.match(r"^\S+ cam-print frame 1 no faces$", lines[2])
    assert lines[3].endswith("cam-print frame 2 track 0 happiness 0.70 box 0,20,48,48")
    assert len(lines) == 4


def test_run_subscriber_timeout_without_messages(broker):
    started = time.monotonic()
    assert run_subscriber(broker.url, "cam-silent", json_mode=False, out=io.StringIO(), timeout=0.3) == 0
    assert time.monotonic() - started < 3.0


def test_format_event_lines():
    e = make_event("dev", 5, [face_entry(3, (1, 2, 30, 40), EMOTIONS, PROBS[::-1])], "m", "1", timestamp=0)
    assert format_event_lines(e) == ["1970-01-01T00:00:00.000Z dev frame 5 track 3 fear 0.70 box 1,2,30,40"]
    assert format_event_lines(make_event("dev", 6, [], "m", "1")) == []


# --- URLs, topics, no paho --------------------------------------------------------------------


def test_parse_url():
    assert parse_url("mqtt://broker.local") == MqttUrl("mqtt", "broker.local", 1883, None, None, False)
    assert parse_url("mqtts://broker.local") == MqttUrl("mqtts", "broker.local", 8883, None, None, True)
    url = parse_url("MQTT://agent%40site:p%3Ass@10.0.0.5:1884/")
    assert (url.host, url.port, url.username, url.password) == ("10.0.0.5", 1884, "agent@site", "p:ss")
    assert "p:ss" not in repr(url) and "p%3Ass" not in repr(url) and "p:ss" not in str(url)
    assert url.redacted() == "mqtt://agent%40site:***@10.0.0.5:1884"
    assert parse_url("mqtt://[::1]:1999").host == "::1"
    assert parse_url("mqtt://user@h").username == "user"


@pytest.mark.parametrize(
    "url, message",
    [
        ("http://broker:1883", "scheme 'http' is not supported"),
        ("broker:1883", "no scheme"),
        ("mqtt://", "missing host"),
        ("mqtt://:1883", "missing host"),
        ("mqtt://user:secret@:1883", "missing host"),
        ("mqtt://broker:0", "port 0 is out of range 1..65535"),
        ("mqtt://broker:65536", "port 65536 is out of range 1..65535"),
        ("mqtt://broker:http", "port 'http' is not a number"),
        ("mqtt://broker:", "empty port"),
        ("mqtt://broker:1883/topic", "unexpected path"),
        ("mqtt://::1:1883", "IPv6"),
    ],
)
def test_bad_urls_give_clear_errors(url, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        MqttPublisher(BrokerSettings(url), "cam-1")
    assert "secret" not in str(info.value)


def test_topics_and_bad_names():
    assert topics(DEFAULT_PREFIX, "cam-1") == ("fer-edge/cam-1/events", "fer-edge/cam-1/status", "fer-edge/cam-1/stats")
    assert topics("site/a", "cam-1").events == "site/a/cam-1/events"
    assert subscription_topics("fer-edge", "+", ("events",)) == ["fer-edge/+/events"]
    assert parse_topic("fer-edge", "fer-edge/cam-1/stats") == ("cam-1", "stats")
    assert parse_topic("fer-edge", "other/cam-1/stats") == (None, None)
    for device, message in (
        ("cam+1", "'+'"),
        ("cam#", "'#'"),
        ("", "empty"),
        ("a/b", "'/'"),
        ("a b", "white space"),
        ("+", "'+'"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            topics("fer-edge", device)
        with pytest.raises(ValueError, match="device id"):
            MqttPublisher(BrokerSettings("mqtt://h"), device)
    for prefix, message in (
        ("", "empty"),
        ("a/+", "'+'"),
        ("#", "'#'"),
        ("a//b", "empty level"),
        ("/a", "empty level"),
        ("$SYS", "'$'"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            topics(prefix, "cam-1")
    with pytest.raises(ValueError, match="not mqtts"):
        MqttPublisher(BrokerSettings("mqtt://h", ca_certs="/ca.crt"), "cam-1")


def test_memory_publisher():
    pub = MemoryPublisher("cam-mem")
    with pub:
        assert pub.connected
        assert pub.publish_event(event("cam-mem", 0))
        assert pub.publish_stats(stats_payload("cam-mem", 1.0, {}, 1, 1))
    assert not pub.connected and pub.publish_event(event("cam-mem", 1)) is False
    assert [e["frame"] for e in pub.events] == [0] and len(pub.stats) == 1
    assert [s["state"] for s in pub.statuses] == ["online", "offline"]
    assert [t for t, _ in pub.messages] == [
        "fer-edge/cam-mem/status",
        "fer-edge/cam-mem/events",
        "fer-edge/cam-mem/stats",
        "fer-edge/cam-mem/status",
    ]
    with pytest.raises(ValueError):
        MemoryPublisher("cam-mem").publish_event({"x": float("inf")})


def test_the_publisher_interface_is_declared_and_a_wrapper_passes_it_through():
    from edge.delivery.base import Publisher, PublisherWrapper

    class Incomplete(Publisher):
        def publish_event(self, event):
            return True

    with pytest.raises(TypeError):
        Incomplete()  # start, publish_stats, ..., close, connected are abstract
    inner = MemoryPublisher("cam-wrapped")
    wrapper = PublisherWrapper(inner)
    assert wrapper.device_id == "cam-wrapped" and wrapper.topics is inner.topics
    assert wrapper.delivery() is None and wrapper.outbox is None  # nothing queued in memory to report
    assert wrapper.publish_status("online", phase="running") is False  # its own status only
    with wrapper:
        assert wrapper.publish_event(event("cam-wrapped", 0)) and wrapper.counters["published"] == 1
    assert [s["state"] for s in inner.statuses] == ["online", "offline"]


def test_without_paho_the_error_says_how_to_install(monkeypatch):
    for name in ("paho", "paho.mqtt", "paho.mqtt.client"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import paho...` fail
    pub = MqttPublisher(BrokerSettings("mqtt://127.0.0.1:1883"), "cam-nopaho")  # constructing needs no paho
    with pytest.raises(PahoMissingError) as info:
        pub.start()
    assert str(info.value) == PAHO_MISSING == "paho-mqtt is not installed: pip install 'paho-mqtt>=1.5,<3'"
    assert isinstance(info.value, ImportError)
    MemoryPublisher("cam-nopaho").start()


def test_importing_edge_modules_does_not_import_paho():
    code = (
        "import sys; import edge.events.payloads, edge.delivery.url, edge.delivery.base, edge.delivery.tls, edge.delivery.client, edge.delivery.mqtt, edge.delivery.subscribe; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'paho'))"
    )
    out = subprocess.check_output([sys.executable, "-c", code], cwd=str(REPO), universal_newlines=True)
    assert out.strip() == "[]"


def test_only_edge_mqtt_client_imports_paho():
    importing = []
    skip = ("tests", "build", "dist", "data", "runs", "models", "examples")  # examples: consumers
    paths = list(REPO.glob("*.py"))
    for top in REPO.iterdir():
        if top.is_dir() and not top.name.startswith(".") and top.name not in skip:
            paths += top.rglob("*.py")
    for path in paths:
        rel = path.relative_to(REPO)
        text = path.read_text(encoding="utf-8", errors="replace")
        if re.search(r"^\s*(import|from)\s+paho\b", text, re.M):
            importing.append(rel.as_posix())
    assert importing == ["edge/delivery/client.py"]


def test_memory_publisher_bound_keeps_the_newest_and_counts_all():
    pub = MemoryPublisher("cam-bounded", keep=5)
    pub.start()
    for frame in range(50):
        pub.publish_event(event("cam-bounded", frame))
    pub.close()
    assert [e["frame"] for e in pub.events] == [45, 46, 47, 48, 49]
    assert len(pub.messages) == 5 and pub.statuses[-1]["state"] == "offline"
    assert pub.counters["published"] == 50


def test_agent_without_a_broker_keeps_bounded_memory():
    from edge.agent.service import MEMORY_KEEP, make_publisher
    from edge.config.agent import load_config

    pub = make_publisher(load_config(None, env={}, overrides={"broker": "", "device_id": "cam-nobroker"}))
    assert isinstance(pub, MemoryPublisher) and pub.keep == MEMORY_KEEP


def test_broker_settings_are_one_validated_value(tmp_path):
    from edge.config.agent import ConfigError, load_config
    from edge.delivery.settings import from_config

    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    config = load_config(
        None,
        env={},
        overrides={
            "broker": "mqtt://cam@broker.local:1884",
            "password_file": str(secret),
            "protocol": "5",
            "keepalive": 7,
        },
    )
    settings = from_config(config)
    assert settings.password == "s3cret" and settings.username is None and settings.protocol == "5"
    assert "s3cret" not in repr(settings) and "'***'" in repr(settings)
    pub = MqttPublisher(settings, "cam-settings", data_dir=None)
    assert pub.keepalive == 7 and pub.protocol == "5" and pub.url.port == 1884 and pub.url.username == "cam"
    assert settings.client_options() == {"password": "s3cret"}
    with pytest.raises(ConfigError, match="holds a password"):
        from_config({"broker": "mqtt://cam:oops@broker.local"})
    with pytest.raises(ConfigError, match="key 'ca_file': file"):
        from_config({"broker": "mqtts://broker.local", "ca_file": str(tmp_path / "missing.pem")})


# --- latest-value (retained) messages and track messages ------------------------------------------


def test_latest_values_are_sent_once_newest_first_and_again_after_a_broker_restart(tmp_path):
    device = "cam-latest"
    mosq = Mosquitto(tmp_path / "broker")  # no persistence: a restart forgets retained messages
    pub = MqttPublisher(BrokerSettings(mosq.url, reconnect_delay=(0.3, 0.6)), device)
    pub.start()
    for faces in (1, 2, 3):  # set while the broker is down: only the newest may go out
        assert pub.publish_state({"faces": faces})
    assert pub.publish_track({"type": "new", "after": {"id": "x-1"}})  # queued like an event
    mosq.start()
    state_topic, tracks_topic = "fer-edge/{}/state".format(device), "fer-edge/{}/tracks".format(device)
    inbox = RawInbox(mosq.url, "latest-listener", ["fer-edge/{}/#".format(device)])
    try:
        assert pub.wait_connected(WAIT)
        assert wait_until(lambda: inbox.of(tracks_topic))
        assert wait_until(lambda: inbox.of(state_topic))
        time.sleep(0.5)
        states = inbox.data(state_topic)
        assert states == [{"faces": 3}], states
        tracks = inbox.data(tracks_topic)
        assert tracks == [{"type": "new", "after": {"id": "x-1"}}]
    finally:
        inbox.stop()
    mosq.stop()
    mosq.start()  # the retained state is gone from the broker; the publisher sends it again
    assert wait_until(lambda: pub.counters["reconnects"] >= 1)
    late = RawInbox(mosq.url, "late-listener", [state_topic])
    try:
        assert wait_until(lambda: late.messages)
        assert late.data(state_topic)[0] == {"faces": 3} and late.of(state_topic)[0][1]  # retained
    finally:
        late.stop()
    assert pub.publish_retained("fer-edge/{}/state".format(device), None)  # clear it
    pub.close(5)
    try:
        cleared = RawInbox(mosq.url, "cleared-listener", [state_topic])
        time.sleep(0.8)
        assert cleared.messages == []
        cleared.stop()
    finally:
        mosq.stop()


def test_memory_publisher_keeps_tracks_and_latest_values():
    pub = MemoryPublisher("cam-mem-latest")
    pub.start()
    assert pub.publish_track({"type": "end"}) and pub.tracks == [{"type": "end"}]
    assert pub.publish_state({"faces": 1}) and pub.publish_state({"faces": 0})
    assert pub.retained == {"fer-edge/cam-mem-latest/state": {"faces": 0}}
    assert (
        pub.publish_retained("homeassistant/sensor/x/config", "text")
        and pub.retained["homeassistant/sensor/x/config"] == "text"
    )
    pub.publish_retained("homeassistant/sensor/x/config", None)
    assert "homeassistant/sensor/x/config" not in pub.retained
    pub.close()
    assert not pub.publish_track({"type": "new"}) and not pub.publish_state({"faces": 2})
