"""Home Assistant MQTT discovery for a fer-edge agent (opt-in: config ``homeassistant``). Python 3.6.

With discovery on, the agent publishes one retained config per sensor under Home Assistant's
discovery prefix (default ``homeassistant``)::

    homeassistant/sensor/fer-edge_<device_id>/faces/config             faces in view
    homeassistant/sensor/fer-edge_<device_id>/dominant_emotion/config  their dominant emotion (an enum
                                                                       sensor; counts per emotion as attributes)
    homeassistant/sensor/fer-edge_<device_id>/fps/config               frames per second (diagnostic)

Every sensor reads the agent's retained state topic ``<prefix>/<device_id>/state``
(:func:`edge.events.payloads.state_payload`) with a ``value_template``, and its availability from the
agent's retained status topic ``<prefix>/<device_id>/status``: the JSON status is reduced to the
plain ``online``/``offline`` with ``availability_template: "{{ value_json.state }}"`` and compared
with ``payload_available: online`` / ``payload_not_available: offline`` (Zigbee2MQTT does the same).
The status topic stays JSON because it carries the MQTT last will (a connection has only one),
which is what turns a crashed or unplugged agent ``offline``, and existing consumers read it.
The three sensors belong to one Home Assistant device per agent (``identifiers``:
``fer-edge_<device_id>``).

The configs go through the publisher's latest-value path (retained, sent again after every
reconnection, so a broker that lost its retained messages gets them back). To remove the
entities, publish an empty retained message to each config topic (:func:`clear_discovery`).
"""

import binascii
import re

from edge.delivery.url import DEFAULT_PREFIX, check_device_id, check_prefix
from edge.labels import EMOTIONS
from edge.version import __version__

DEFAULT_DISCOVERY_PREFIX = "homeassistant"
NO_FACE = "none"  # the dominant emotion when no face is in view
_NOT_ID = re.compile(r"[^A-Za-z0-9_-]")


def check_discovery_prefix(prefix):
    """``prefix`` if it is a usable discovery prefix (a topic prefix); ValueError otherwise."""
    return check_prefix(prefix)


def node_id(device_id):
    """The discovery node id of a device: ``fer-edge_<device_id>`` with characters Home Assistant
    does not allow in a topic id (anything but letters, digits, ``_`` and ``-``) replaced, and then
    a hash of the device id so that two ids never share one."""
    check_device_id(device_id)
    safe = _NOT_ID.sub("_", device_id)
    if safe != device_id:
        safe = "{}-{:08x}".format(safe, binascii.crc32(device_id.encode("utf-8")))
    return "fer-edge_" + safe


def _sensors(state_topic):
    """(object id, name, options) of each sensor."""
    return (
        (
            "faces",
            "Faces in view",
            {
                "value_template": "{{ value_json.faces }}",
                "state_class": "measurement",
                "unit_of_measurement": "faces",
                "icon": "mdi:face-recognition",
            },
        ),
        (
            "dominant_emotion",
            "Dominant emotion",
            {
                "value_template": "{{ value_json.dominant_emotion }}",
                "device_class": "enum",
                "options": list(EMOTIONS) + [NO_FACE],
                "icon": "mdi:emoticon-outline",
                "json_attributes_topic": state_topic,
                "json_attributes_template": "{{ value_json.emotions | tojson }}",
            },
        ),
        (
            "fps",
            "Frames per second",
            {
                "value_template": "{{ value_json.fps }}",
                "state_class": "measurement",
                "unit_of_measurement": "fps",
                "entity_category": "diagnostic",
                "suggested_display_precision": 1,
                "icon": "mdi:speedometer",
            },
        ),
    )


def discovery_configs(
    device_id, prefix=DEFAULT_PREFIX, discovery_prefix=DEFAULT_DISCOVERY_PREFIX, model_id=None, sw_version=None
):
    """``[(config topic, config dict)]`` for the agent's sensors (see the module doc)."""
    check_discovery_prefix(discovery_prefix)
    base = "{}/{}".format(check_prefix(prefix), check_device_id(device_id))
    state_topic, status_topic = base + "/state", base + "/status"
    node = node_id(device_id)
    version = str(sw_version or __version__)
    device = {
        "identifiers": [node],
        "name": "fer-edge {}".format(device_id),
        "manufacturer": "fer-edge",
        "model": "emotion recognition agent" + (" ({})".format(model_id) if model_id else ""),
        "sw_version": version,
    }
    out = []
    for object_id, name, options in _sensors(state_topic):
        config = {
            "name": name,
            "unique_id": "{}_{}".format(node, object_id),
            "state_topic": state_topic,
            "availability_topic": status_topic,
            "availability_template": "{{ value_json.state }}",
            "payload_available": "online",
            "payload_not_available": "offline",
            "qos": 1,
            "device": device,
            "origin": {"name": "fer-edge", "sw_version": version},
        }
        config.update(options)
        out.append(("{}/sensor/{}/{}/config".format(discovery_prefix, node, object_id), config))
    return out


def announce(publisher, device_id, prefix=DEFAULT_PREFIX, discovery_prefix=DEFAULT_DISCOVERY_PREFIX, model_id=None):
    """Hand the discovery configs to ``publisher`` (retained, latest value); returns their topics."""
    topics = []
    for topic, config in discovery_configs(device_id, prefix, discovery_prefix, model_id):
        publisher.publish_retained(topic, config)
        topics.append(topic)
    return topics


def clear_discovery(publisher, device_id, discovery_prefix=DEFAULT_DISCOVERY_PREFIX):
    """Remove the agent's entities from Home Assistant: an empty retained message per config topic."""
    topics = [topic for topic, _ in discovery_configs(device_id, discovery_prefix=discovery_prefix)]
    for topic in topics:
        publisher.publish_retained(topic, None)
    return topics
