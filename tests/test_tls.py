"""TLS, client certificates, ACLs and passwords against a real mosquitto (127.0.0.1).

Certificates are made with the openssl command by the ``pki`` fixture (conftest.py: a CA, a second
CA, a server certificate for DNS:localhost, client certificates whose CN is the device id). The brokers run the example
configurations of examples/mosquitto/ (paths and port replaced), so those files are tested too.
Skipped without mosquitto or openssl. Python 3.6 + paho-mqtt 1.x compatible.
"""

import json
import logging
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge.agent.service import make_publisher
from edge.config.agent import ConfigError, load_config
from edge.delivery.base import MemoryPublisher
from edge.delivery.mqtt import MqttPublisher
from edge.delivery.settings import BrokerSettings
from edge.delivery.tls import AWS_ALPN, alpn_protocols, make_ssl_context
from edge.delivery.url import DEFAULT_PREFIX, TOPIC_KINDS, subscription_topics, topics
from edge.events.homeassistant import discovery_configs
from edge.events.payloads import face_entry, make_event
from edge.labels import EMOTIONS
from helpers import RawInbox, collect, wait_until
from mqtt_broker import running_mosquitto

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "mosquitto"
PROBS = [0.05, 0.7, 0.1, 0.05, 0.04, 0.03, 0.02, 0.01]
WAIT = 10.0
REFUSED_WAIT = 2.0  # how long a connection that must fail is given


def event(device, frame):
    return make_event(device, frame, [face_entry(1, (10, 20, 48, 48), EMOTIONS, PROBS)], "m", "1")


def example_config(name, pki, tmp_path, passwd=None):
    """An examples/mosquitto/ configuration with this test's files and a loopback port."""
    text = (EXAMPLES / name).read_text()
    certs = str(Path(pki["ca"]).parent) + "/"
    text = (
        text.replace("/etc/mosquitto/certs/", certs)
        .replace("/etc/mosquitto/fer-edge.acl", str(EXAMPLES / "fer-edge.acl"))
        .replace("/var/lib/mosquitto/", str(tmp_path) + "/")
        .replace("listener 8883", "listener {port} 127.0.0.1")
    )
    if passwd:
        text = text.replace("/etc/mosquitto/passwd", str(passwd))
    return text


@pytest.fixture(scope="module")
def mtls_broker(pki, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mtls")
    with running_mosquitto(folder, config=example_config("fer-edge-mtls.conf", pki, folder)) as broker:
        broker.tls_url = "mqtts://localhost:{}".format(broker.port)
        yield broker


def consumer(broker, pki, device="+", name="consumer", kinds=("events", "status")):
    return collect(
        broker.tls_url,
        device,
        WAIT,
        kinds=kinds,
        ca_certs=pki["ca"],
        certfile=pki[name],
        keyfile=pki[name].replace(".crt", ".key"),
        reconnect_delay=(0.2, 1),
    )


def refused(publisher):
    """Start ``publisher``, check it does not connect, return its last_error."""
    publisher.start()
    try:
        assert not publisher.wait_connected(REFUSED_WAIT)
        assert wait_until(lambda: publisher.last_error, 3.0)
        return publisher.last_error
    finally:
        publisher.close(timeout=0)


def agent_topics(device):
    """Every topic an agent with ``homeassistant`` on publishes to (the agent run below shows that it
    publishes to all of them and to no other): its five fer-edge topics and the discovery configs."""
    memory, own = MemoryPublisher(device), topics(DEFAULT_PREFIX, device)
    return {own.events, own.status, own.stats, memory.tracks_topic, memory.state_topic} | {
        topic for topic, _ in discovery_configs(device)
    }


def test_device_certificate_connects_and_the_consumer_reads(mtls_broker, pki):
    sub, inbox = consumer(mtls_broker, pki)
    pub = MqttPublisher(
        BrokerSettings(
            mtls_broker.tls_url, ca_certs=pki["ca"], certfile=pki["cam-a"], keyfile=pki["cam-a"].replace(".crt", ".key")
        ),
        "cam-a",
    )
    try:
        pub.start()
        assert pub.wait_connected(WAIT), pub.last_error
        for i in range(3):
            pub.publish_event(event("cam-a", i))
        assert wait_until(lambda: inbox.topics().count("fer-edge/cam-a/events") == 3), inbox.topics()
    finally:
        pub.close()
        sub.stop()
    assert "fer-edge/cam-a/status" in inbox.topics()


def test_acl_stops_a_device_publishing_under_another_id(mtls_broker, pki):
    """cam-a's certificate, device id cam-b: mosquitto acknowledges and drops (MQTT 3.1.1)."""
    sub, inbox = consumer(mtls_broker, pki)
    key = pki["cam-a"].replace(".crt", ".key")
    impostor = MqttPublisher(
        BrokerSettings(mtls_broker.tls_url, ca_certs=pki["ca"], certfile=pki["cam-a"], keyfile=key), "cam-b"
    )
    honest = MqttPublisher(
        BrokerSettings(
            mtls_broker.tls_url, ca_certs=pki["ca"], certfile=pki["cam-a"], keyfile=key, client_id="cam-a-second"
        ),
        "cam-a",
    )
    try:
        impostor.start()
        assert impostor.wait_connected(WAIT), impostor.last_error
        for i in range(5):
            impostor.publish_event(event("cam-b", i))
        assert wait_until(lambda: impostor.counters["acknowledged"] == 5)  # PUBACKed ...
        honest.start()
        assert honest.wait_connected(WAIT)
        honest.publish_event(event("cam-a", 0))
        assert wait_until(lambda: "fer-edge/cam-a/events" in inbox.topics())
        time.sleep(0.5)
    finally:
        impostor.close()
        honest.close()
        sub.stop()
    assert not [t for t in inbox.topics() if "/cam-b/" in t], inbox.topics()  # ... and dropped


def test_mqtt5_counts_an_acl_refusal_as_failed(mtls_broker, pki, caplog):
    """With MQTT 5 the broker's PUBACK carries a reason code: the impostor's publishes are counted
    as failed (not acknowledged) and logged; the honest device's go through as before."""
    import paho.mqtt as paho

    if int(paho.__version__.split(".")[0]) < 2:
        pytest.skip("paho-mqtt {} gives on_publish no reason code".format(paho.__version__))
    sub, inbox = consumer(mtls_broker, pki)
    key = pki["cam-a"].replace(".crt", ".key")
    impostor = MqttPublisher(
        BrokerSettings(mtls_broker.tls_url, ca_certs=pki["ca"], certfile=pki["cam-a"], keyfile=key, protocol="5"),
        "cam-b",
    )
    honest = MqttPublisher(
        BrokerSettings(
            mtls_broker.tls_url,
            ca_certs=pki["ca"],
            certfile=pki["cam-a"],
            keyfile=key,
            client_id="cam-a-v5",
            protocol="5",
        ),
        "cam-a",
    )
    try:
        impostor.start()
        assert impostor.wait_connected(WAIT), impostor.last_error
        for i in range(5):
            impostor.publish_event(event("cam-b", i))
        assert wait_until(lambda: impostor.counters["failed"] == 5), impostor.counters
        honest.start()
        assert honest.wait_connected(WAIT), honest.last_error
        honest.publish_event(event("cam-a", 0))
        assert wait_until(lambda: honest.counters["acknowledged"] == 1), honest.counters
        assert wait_until(lambda: "fer-edge/cam-a/events" in inbox.topics())
    finally:
        impostor.close()
        honest.close()
        sub.stop()
    assert impostor.counters["acknowledged"] == 0 and impostor.counters["queued"] == 0
    assert "refused" in (impostor.last_error or "") and "publish refused" in caplog.text
    assert honest.counters["failed"] == 0
    assert not [t for t in inbox.topics() if "/cam-b/" in t]


def test_consumer_certificate_cannot_publish(mtls_broker, pki):
    """The consumer's certificate may read but not write, not even under its own name. Observed by
    another consumer (dashboard), which may read fer-edge/consumer/#: a publish that got through
    would reach it, as cam-a's publish does."""
    sub, inbox = consumer(mtls_broker, pki, name="dashboard")
    pub = MqttPublisher(
        BrokerSettings(
            mtls_broker.tls_url,
            ca_certs=pki["ca"],
            certfile=pki["consumer"],
            keyfile=pki["consumer"].replace(".crt", ".key"),
        ),
        "consumer",
    )
    device = MqttPublisher(
        BrokerSettings(
            mtls_broker.tls_url,
            ca_certs=pki["ca"],
            certfile=pki["cam-a"],
            keyfile=pki["cam-a"].replace(".crt", ".key"),
            client_id="cam-a-control",
        ),
        "cam-a",
    )
    try:
        pub.start()
        assert pub.wait_connected(WAIT)
        pub.publish_event(event("consumer", 0))
        assert wait_until(lambda: pub.counters["acknowledged"] == 1)  # PUBACKed (MQTT 3.1.1) ...
        device.start()
        assert device.wait_connected(WAIT)
        device.publish_event(event("cam-a", 0))
        assert wait_until(lambda: "fer-edge/cam-a/events" in inbox.topics())  # the observer sees what passes
        time.sleep(0.5)
    finally:
        pub.close()
        device.close()
        sub.stop()
    assert not [t for t in inbox.topics() if t.startswith("fer-edge/consumer/")], inbox.topics()  # ... dropped


def test_an_agent_with_homeassistant_publishes_everything_under_the_acl(mtls_broker, pki, tmp_path):
    """The real agent (``fer-edge run --homeassistant``, MQTT 5 so that a refused publish shows) with
    cam-a's certificate: Home Assistant's user gets every topic the agent publishes (events, tracks,
    state, stats, status, the discovery configs) and a consumer with every fer-edge topic kind gets
    its five; then cam-a may not write another device's discovery configs, nor a consumer its own."""
    import paho.mqtt as paho

    pytest.importorskip("onnxruntime", reason="the agent runs the shipped model on ONNX Runtime")
    pytest.importorskip("cv2", reason="the sample video is written with OpenCV")
    if sys.version_info < (3, 8) or int(paho.__version__.split(".")[0]) < 2:
        pytest.skip(
            "fer-edge run is host code; MQTT 5 refusals need paho-mqtt 2 (here {}, Python {})".format(
                paho.__version__, sys.version.split()[0]
            )
        )
    from fer_edge.samples import make_sample_video

    video = make_sample_video(str(tmp_path / "two-faces.mp4"), frames=30)
    expected = agent_topics("cam-a")
    home = RawInbox(
        mtls_broker.tls_url,
        "raw-homeassistant",
        ["fer-edge/cam-a/#", "homeassistant/#"],
        WAIT,
        ca_certs=pki["ca"],
        certfile=pki["homeassistant"],
        keyfile=pki["homeassistant"].replace(".crt", ".key"),
    )
    sub, inbox = consumer(mtls_broker, pki, device="cam-a", name="dashboard", kinds=TOPIC_KINDS)
    key = pki["cam-a"].replace(".crt", ".key")
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "fer_edge",
                "run",
                "--log-level",
                "WARNING",
                "--quiet",
                "--source",
                video,
                "--broker",
                mtls_broker.tls_url,
                "--ca-file",
                pki["ca"],
                "--cert-file",
                pki["cam-a"],
                "--key-file",
                key,
                "--device-id",
                "cam-a",
                "--protocol",
                "5",
                "--homeassistant",
                "--stats-interval",
                "0.5",
                "--data-dir",
                str(tmp_path / "queue"),
            ],
            cwd=str(REPO),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            universal_newlines=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = json.loads(proc.stdout.strip().splitlines()[-1])["summary"]
        assert wait_until(
            lambda: (
                home.topics() == expected and set(inbox.topics()) == {t for t in expected if t.startswith("fer-edge/")}
            ),
            20,
        ), (sorted(expected - home.topics()), sorted(home.topics() - expected), sorted(set(inbox.topics())))
        # the other way round: what cam-a may not write, with MQTT 5's refusals counted as failed
        impostor = MqttPublisher(
            BrokerSettings(
                mtls_broker.tls_url,
                ca_certs=pki["ca"],
                certfile=pki["cam-a"],
                keyfile=key,
                client_id="cam-a-impostor",
                protocol="5",
            ),
            "cam-a",
        )
        reader = MqttPublisher(
            BrokerSettings(
                mtls_broker.tls_url,
                ca_certs=pki["ca"],
                certfile=pki["dashboard"],
                keyfile=pki["dashboard"].replace(".crt", ".key"),
                protocol="5",
            ),
            "dashboard",
        )
        others = [topic for topic, _ in discovery_configs("cam-b")][:1] + [
            topic for topic, _ in discovery_configs("dashboard")
        ][:1]
        try:
            for pub, topic in zip((impostor, reader), others):
                pub.start()
                assert pub.wait_connected(WAIT), pub.last_error
                pub.publish_retained(topic, {"name": "not allowed"})
                assert wait_until(lambda pub=pub: "refused" in (pub.last_error or ""), 5), (topic, pub.last_error)
            time.sleep(0.3)
        finally:
            impostor.close()
            reader.close()
    finally:
        home.stop()
        sub.stop()
    assert summary["delivery"]["failed"] == 0 and summary["delivery"]["dropped"] == 0, summary["delivery"]
    assert summary["tracks"]["new"] == 2 and "publish refused" not in proc.stderr, proc.stderr[-2000:]
    assert not (set(others) & home.topics())


def test_wrong_ca_is_refused_with_a_clear_message(mtls_broker, pki):
    error = refused(
        MqttPublisher(
            BrokerSettings(
                mtls_broker.tls_url,
                ca_certs=pki["other-ca"],
                certfile=pki["cam-a"],
                keyfile=pki["cam-a"].replace(".crt", ".key"),
                reconnect_delay=(1, 1),
            ),
            "cam-a",
        )
    )
    assert "not trusted by ca_file {}".format(pki["other-ca"]) in error
    assert "certificate verify failed" in error


def test_missing_client_certificate_is_refused_with_a_clear_message(mtls_broker, pki):
    error = refused(
        MqttPublisher(BrokerSettings(mtls_broker.tls_url, ca_certs=pki["ca"], reconnect_delay=(1, 1)), "cam-a")
    )
    assert "requires a client certificate" in error and "cert_file" in error, error


def test_client_certificate_from_another_ca_is_refused(mtls_broker, pki):
    error = refused(
        MqttPublisher(
            BrokerSettings(
                mtls_broker.tls_url,
                ca_certs=pki["ca"],
                certfile=pki["rogue"],
                keyfile=pki["rogue"].replace(".crt", ".key"),
                reconnect_delay=(1, 1),
            ),
            "cam-a",
        )
    )
    assert "client certificate {}".format(pki["rogue"]) in error, error


def test_host_name_is_verified_unless_tls_insecure(mtls_broker, pki, caplog):
    key = pki["cam-a"].replace(".crt", ".key")
    by_ip = "mqtts://127.0.0.1:{}".format(mtls_broker.port)  # the certificate names localhost only
    error = refused(
        MqttPublisher(
            BrokerSettings(by_ip, ca_certs=pki["ca"], certfile=pki["cam-a"], keyfile=key, reconnect_delay=(1, 1)),
            "cam-a",
        )
    )
    assert "not valid for the host name 127.0.0.1" in error, error
    caplog.set_level(logging.WARNING)
    pub = MqttPublisher(
        BrokerSettings(by_ip, ca_certs=pki["ca"], certfile=pki["cam-a"], keyfile=key, tls_insecure=True), "cam-a"
    )
    try:
        pub.start()
        assert pub.wait_connected(WAIT), pub.last_error
    finally:
        pub.close()
    assert "host name verification is OFF" in caplog.text
    # the CA is still checked with tls_insecure
    error = refused(
        MqttPublisher(
            BrokerSettings(
                by_ip,
                ca_certs=pki["other-ca"],
                certfile=pki["cam-a"],
                keyfile=key,
                tls_insecure=True,
                reconnect_delay=(1, 1),
            ),
            "cam-a",
        )
    )
    assert "certificate verify failed" in error


def test_alpn_for_aws_iot_core_on_443(pki):
    assert alpn_protocols("mqtts://abc123-ats.iot.eu-west-1.amazonaws.com:443") == [AWS_ALPN]
    assert alpn_protocols("mqtts://abc123-ats.iot.eu-west-1.amazonaws.com:8883") == []
    assert alpn_protocols("mqtts://abc123-ats.iot.eu-west-1.amazonaws.com:443", "none") == []
    assert alpn_protocols("mqtts://broker.local:443", "x-amzn-mqtt-ca, mqtt") == [AWS_ALPN, "mqtt"]
    assert alpn_protocols("mqtt://broker.local:1883") == []
    with pytest.raises(ValueError, match="mqtts"):
        alpn_protocols("mqtt://broker.local:443", AWS_ALPN)
    # A TLS server on 127.0.0.1 that records the protocol the publisher asks for.
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(pki["server"], pki["server"].replace(".crt", ".key"))
    server_ctx.set_alpn_protocols([AWS_ALPN])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port, seen = listener.getsockname()[1], []

    def serve():
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                seen.append(tls.selected_alpn_protocol())
        except (ssl.SSLError, OSError) as exc:
            seen.append(exc)

    thread = threading.Thread(target=serve)
    thread.daemon = True
    thread.start()
    pub = MqttPublisher(
        BrokerSettings("mqtts://localhost:{}".format(port), ca_certs=pki["ca"], alpn=AWS_ALPN, reconnect_delay=(5, 5)),
        "cam-alpn",
    )
    pub.start()
    try:
        thread.join(WAIT)
    finally:
        pub.close(timeout=0)
        listener.close()
    assert seen == [AWS_ALPN]


def test_tls_setting_errors_name_the_file_or_key(pki, tmp_path):
    missing = str(tmp_path / "missing.crt")
    with pytest.raises(ValueError, match="client certificate \\(cert_file\\) .*missing.crt not found"):
        MqttPublisher(BrokerSettings("mqtts://localhost:8883", certfile=missing), "cam-a")
    with pytest.raises(ValueError, match="CA file \\(ca_file\\) .*missing.crt not found"):
        MqttPublisher(BrokerSettings("mqtts://localhost:8883", ca_certs=missing), "cam-a")
    with pytest.raises(ValueError, match="without a client certificate"):
        MqttPublisher(BrokerSettings("mqtts://localhost:8883", keyfile=pki["cam-a"].replace(".crt", ".key")), "cam-a")
    not_pem = tmp_path / "ca.crt"
    not_pem.write_text("not a certificate\n")
    with pytest.raises(ValueError, match="ca_file.*ca.crt cannot be loaded"):
        make_ssl_context("mqtts://localhost", ca_certs=str(not_pem))
    with pytest.raises(ValueError, match="is the key the certificate's"):  # key of another certificate
        make_ssl_context("mqtts://localhost", certfile=pki["cam-a"], keyfile=pki["consumer"].replace(".crt", ".key"))
    with pytest.raises(ValueError, match="not mqtts"):
        MqttPublisher(BrokerSettings("mqtt://localhost", ca_certs=pki["ca"]), "cam-a")
    cases = [
        ({"broker": "mqtt://h", "ca_file": pki["ca"]}, "key 'ca_file': TLS settings need a broker URL with mqtts://"),
        ({"broker": "mqtt://h", "tls_insecure": "true"}, "key 'tls_insecure'"),
        ({"broker": "mqtts://h", "cert_file": missing}, "key 'cert_file': file {} not found".format(missing)),
        ({"broker": "mqtts://h", "key_file": pki["cam-a"].replace(".crt", ".key")}, "key 'key_file'"),
        ({"broker": "mqtts://h:0"}, "key 'broker': broker URL 'mqtts://h:0': port 0 is out of range"),
        ({"broker": "ws://h"}, "key 'broker': broker URL scheme 'ws' is not supported"),
        ({"reconnect_min_delay": 10, "reconnect_max_delay": 5}, "key 'reconnect_min_delay'"),
    ]
    for overrides, message in cases:
        with pytest.raises(ConfigError) as info:
            load_config(None, env={}, overrides=overrides)
        assert message in str(info.value)


def test_password_from_the_environment_over_tls_and_never_logged(pki, tmp_path, monkeypatch, caplog):
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not os.access(tool, os.X_OK):
        pytest.skip("mosquitto_passwd not installed")
    passwd = tmp_path / "passwd"
    subprocess.check_call([tool, "-b", "-c", str(passwd), "cam-pw", "s3cret-from-env"])
    subprocess.check_call([tool, "-b", str(passwd), "consumer", "c0nsumer"])
    caplog.set_level(logging.DEBUG)
    config_text = example_config("fer-edge-passwords.conf", pki, tmp_path, passwd=passwd)
    with running_mosquitto(tmp_path / "broker", config=config_text) as broker:
        url = "mqtts://localhost:{}".format(broker.port)
        sub, inbox = collect(
            url, "cam-pw", WAIT, kinds=("events",), ca_certs=pki["ca"], username="consumer", password="c0nsumer"
        )
        monkeypatch.setenv("FER_EDGE_PASSWORD", "s3cret-from-env")
        config = load_config(
            None,
            env={},
            overrides={
                "broker": url,
                "device_id": "cam-pw",
                "username": "cam-pw",
                "ca_file": pki["ca"],
                "data_dir": "",
            },
        )
        pub = make_publisher(config)
        try:
            pub.start()
            assert pub.wait_connected(WAIT), pub.last_error
            pub.publish_event(event("cam-pw", 0))
            assert wait_until(lambda: inbox.topics() == ["fer-edge/cam-pw/events"])
        finally:
            pub.close()
        monkeypatch.setenv("FER_EDGE_PASSWORD", "wrong-one")
        bad = make_publisher(config)
        error = refused(bad)
        sub.stop()
    assert "refused by the broker" in error and "auth" in error.lower(), error
    text = caplog.text + repr(pub) + repr(bad) + error
    assert "s3cret" not in text and "wrong-one" not in text


THING = "${iot:Connection.Thing.ThingName}"
ARN = "arn:aws:iot:REGION:ACCOUNT_ID:"


def policy_allows(policy, action, resource, thing):
    """Whether an IoT policy's Allow statements grant ``action`` on ``resource`` to ``thing`` (policy
    variable substituted, ``*`` any characters and ``?`` one, as IoT Core matches resources; MQTT's
    ``+`` and ``#`` are plain characters there). The examples have no Deny statements (checked)."""
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow", statement
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if action not in actions:
            continue
        for pattern in resources:
            pattern = pattern.replace(THING, thing)
            regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
            if re.fullmatch(regex, resource):
                return True
    return False


def test_example_aws_iot_policies():
    device = json.loads((REPO / "examples" / "aws-iot-policy.json").read_text())
    by_action = {}
    for statement in device["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            by_action[action] = statement
    assert set(by_action) == {"iot:Connect", "iot:Publish", "iot:RetainPublish"}
    assert by_action["iot:Connect"]["Resource"].endswith(":client/" + THING)
    assert by_action["iot:Connect"]["Condition"]["ForAllValues:StringEquals"]["iot:ConnectAttributes"] == ["LastWill"]
    # every topic the agent publishes to (homeassistant on; the mosquitto test above shows the agent
    # uses exactly these), retained ones included, and nothing under another thing's name
    for thing in ("door-cam", "cam_2"):
        for topic in agent_topics(thing):
            for action in ("iot:Publish", "iot:RetainPublish"):
                assert policy_allows(device, action, ARN + "topic/" + topic, thing), (action, topic)
        assert policy_allows(device, "iot:Connect", ARN + "client/" + thing, thing)
        assert not policy_allows(device, "iot:Connect", ARN + "client/other", thing)
        for topic in agent_topics("other-cam"):
            assert not policy_allows(device, "iot:Publish", ARN + "topic/" + topic, thing), topic
        assert not policy_allows(device, "iot:Subscribe", ARN + "topicfilter/fer-edge/" + thing + "/events", thing)
    consumer = json.loads((REPO / "examples" / "aws-iot-consumer-policy.json").read_text())
    actions = set(s["Action"] for s in consumer["Statement"])
    assert actions == {"iot:Connect", "iot:Subscribe", "iot:Receive"}  # no publish
    # the filters of `fer-edge subscribe` (every kind, every device) and the topics they deliver
    for topic_filter in subscription_topics(DEFAULT_PREFIX, "+", TOPIC_KINDS):
        assert policy_allows(consumer, "iot:Subscribe", ARN + "topicfilter/" + topic_filter, "dashboard"), topic_filter
    for topic in agent_topics("door-cam"):
        if topic.startswith(DEFAULT_PREFIX + "/"):
            assert policy_allows(consumer, "iot:Receive", ARN + "topic/" + topic, "dashboard"), topic
