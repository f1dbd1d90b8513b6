"""Home Assistant MQTT discovery against a real mosquitto and the real agent.

A consumer that knows nothing but the discovery prefix reads the retained configs, subscribes to
every topic they reference and renders their templates with Jinja2 the way Home Assistant does
(``value_json``): the sensors get values while the agent runs, the availability goes from
online to offline when it stops, and clearing the configs removes them.
"""

import json
import signal
import subprocess
import sys
import time

import pytest

from edge.events.homeassistant import discovery_configs, node_id, reachable_url
from edge.events.payloads import load_schema
from edge.labels import EMOTIONS
from fer_testdata import REPO
from helpers import RawInbox
from mqtt_broker import free_port, mosquitto_fixture

jinja2 = pytest.importorskip("jinja2", reason="jinja2 renders the discovery templates as Home Assistant does")
jsonschema = pytest.importorskip("jsonschema")

broker = mosquitto_fixture(scope="module")
DEVICE = "cam-ha"


def render(template, text):
    """What Home Assistant makes of ``text`` with ``template``."""
    try:
        value_json = json.loads(text)
    except ValueError:
        value_json = None
    return jinja2.Environment().from_string(template).render(value_json=value_json, value=text).strip()


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    from fer_edge.samples import make_sample_video

    return make_sample_video(str(tmp_path_factory.mktemp("ha") / "two-faces.mp4"), frames=600)


def test_discovery_configs_name_the_state_and_availability_topics():
    configs = discovery_configs(
        "door.cam",
        prefix="site/fer-edge",
        model_id="ferplus-x",
        sw_version="1.2",
        expire_after=30,
        configuration_url="http://door.local:8080/",
    )
    assert [t for t, _ in configs] == [
        "homeassistant/sensor/{}/{}/config".format(node_id("door.cam"), o) for o in ("faces", "dominant_emotion", "fps")
    ]
    assert node_id("door.cam").startswith("fer-edge_door_cam-") and node_id("door-cam") == "fer-edge_door-cam"
    for _, config in configs:
        assert config["state_topic"] == "site/fer-edge/door.cam/state"
        assert config["availability_topic"] == "site/fer-edge/door.cam/status"
        assert config["device"]["identifiers"] == [node_id("door.cam")] and config["device"]["sw_version"] == "1.2"
    assert len({c["unique_id"] for _, c in configs}) == 3
    dominant = dict(configs)[configs[1][0]]
    assert dominant["device_class"] == "enum" and dominant["options"] == list(EMOTIONS) + ["none"]
    with pytest.raises(ValueError, match="wildcard"):
        discovery_configs("cam", discovery_prefix="home#")
    # issue 23, item 9: a frozen pipeline expires; the device links the live view; no made-up fps
    for _, config in configs:
        assert config["expire_after"] == 30 and config["device"]["configuration_url"] == "http://door.local:8080/"
    assert "configuration_url" not in discovery_configs("cam")[0][1]["device"]  # no live view: no link
    fps = dict((topic.split("/")[-2], c) for topic, c in configs)["fps"]["value_template"]
    starting = {"schema": "fer-edge/state", "faces": 0, "dominant_emotion": "none", "emotions": {}}
    assert render(fps, json.dumps(starting)) == ""  # an empty value: Home Assistant keeps the sensor unknown
    assert render(fps, json.dumps(dict(starting, fps=14.5))) == "14.5"
    assert reachable_url("http://0.0.0.0:8080/", "door") == "http://door:8080/"
    assert reachable_url("http://[::]:8080/", "door") == "http://door:8080/"
    assert reachable_url("https://192.168.1.20:8443/", "door") == "https://192.168.1.20:8443/"


def test_removal_names_an_unreachable_broker():
    port = free_port()  # nothing listens there
    proc = subprocess.run(
        [sys.executable, "-m", "fer_edge", "homeassistant", "remove", "--broker", "mqtt://127.0.0.1:{}".format(port)]
        + ["--device-id", DEVICE, "--timeout", "3"],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "fer-edge homeassistant: error: cannot connect to the broker mqtt://127.0.0.1:{}".format(port) in proc.stderr


def test_a_consumer_finds_the_sensors_from_the_retained_configs_and_reads_their_values(broker, long_video, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "fer_edge",
        "run",
        "--quiet",
        "--log-level",
        "WARNING",
        "--source",
        long_video,
        "--broker",
        broker.url,
        "--device-id",
        DEVICE,
        "--homeassistant",
        "--stats-interval",
        "0.5",
        "--view",
        "127.0.0.1:0",
        "--data-dir",
        str(tmp_path / "queue"),
    ]
    agent = subprocess.Popen(cmd, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    consumer = RawInbox(broker.url, "ha-consumer")
    try:
        # 1. the retained discovery configs, found from the prefix alone
        consumer.subscribe("homeassistant/#")
        consumer.wait(lambda: len(consumer.topics("homeassistant/")) == 3, what="3 discovery configs")
        configs = {}
        for topic in consumer.topics("homeassistant/"):
            text, _ = consumer.of(topic)[-1]
            configs[topic] = json.loads(text)
        assert {c["device"]["identifiers"][0] for c in configs.values()} == {"fer-edge_" + DEVICE}
        referenced = set()
        for config in configs.values():
            for key in ("state_topic", "availability_topic", "json_attributes_topic"):
                if key in config:
                    referenced.add(config[key])
        assert referenced == {"fer-edge/{}/state".format(DEVICE), "fer-edge/{}/status".format(DEVICE)}
        # 2. every referenced topic receives values, and the templates give what a sensor shows
        for topic in sorted(referenced):
            consumer.subscribe(topic)
        by_object = dict((topic.split("/")[-2], config) for topic, config in configs.items())
        state_topic = by_object["faces"]["state_topic"]

        def sensor(name, text):
            return render(by_object[name]["value_template"], text)

        consumer.wait(
            lambda: any(sensor("faces", text) == "2" for text, _ in consumer.of(state_topic)),
            what="the faces sensor to read 2 (the video shows two faces)",
        )
        consumer.wait(
            lambda: any(float(sensor("fps", text) or 0) > 0 for text, _ in consumer.of(state_topic)),
            what="an fps value",
        )
        values = [text for text, _ in consumer.of(state_topic)]
        check = jsonschema.Draft7Validator(load_schema("state"))
        for text in values:
            check.validate(json.loads(text))
            assert sensor("dominant_emotion", text) in by_object["dominant_emotion"]["options"]
            assert sensor("fps", text) == "" or float(sensor("fps", text)) > 0, text  # never a made-up 0
            assert int(sensor("faces", text)) <= 2, text  # the video never shows more than 2 faces
        for config in configs.values():  # a frozen pipeline shows its sensors unavailable
            assert config["expire_after"] == 30, config
        live = [text for text, retained in consumer.of(state_topic) if not retained]
        assert live, "no state value arrived after subscribing (only the retained one)"
        attributes = json.loads(render(by_object["dominant_emotion"]["json_attributes_template"], values[-1]))
        assert sum(attributes.values()) == json.loads(values[-1])["faces"]
        status_topic = by_object["faces"]["availability_topic"]

        def available():
            texts = [text for text, _ in consumer.of(status_topic)]
            return render(by_object["faces"]["availability_template"], texts[-1]) if texts else None

        consumer.wait(lambda: available() == by_object["faces"]["payload_available"], what="online")
        # 3. the agent stops: the sensors become unavailable and the state says no face
        agent.send_signal(signal.SIGTERM)
        out, err = agent.communicate(timeout=60)
        assert agent.returncode == 0, err[-3000:]
        view = json.loads(out.strip().splitlines()[-1])["summary"]["view"]
        assert view.startswith("http://127.0.0.1:")
        assert {c["device"]["configuration_url"] for c in configs.values()} == {view}  # the live view
        consumer.wait(lambda: available() == by_object["faces"]["payload_not_available"], what="offline")
        consumer.wait(lambda: sensor("faces", consumer.of(state_topic)[-1][0]) == "0", what="faces 0 at the end")
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.communicate()
        consumer.stop()
    # 4. a consumer arriving later (Home Assistant restarting) gets the same configs, retained
    late = RawInbox(broker.url, "ha-late")
    try:
        late.subscribe("homeassistant/#")
        late.wait(lambda: len(late.topics("homeassistant/")) == 3, what="retained configs")
        assert all(late.of(t)[-1][1] for t in late.topics("homeassistant/"))
    finally:
        late.stop()
    # 5. the documented removal (empty retained payloads) removes them from the broker, and leaves
    # nothing of its own (issue 23, item 9: a publisher used to leave its retained status)
    proc = subprocess.run(
        [sys.executable, "-m", "fer_edge", "homeassistant", "remove", "--broker", broker.url, "--device-id", DEVICE],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert all(topic in proc.stdout for topic in configs), proc.stdout
    after = RawInbox(broker.url, "ha-after")
    try:
        after.subscribe("#")
        time.sleep(1.0)
        assert after.topics("homeassistant/") == set()
        retained = {topic for topic, text, retain in after.messages if retain}
        assert retained == {"fer-edge/{}/state".format(DEVICE), "fer-edge/{}/status".format(DEVICE)}, retained
    finally:
        after.stop()
