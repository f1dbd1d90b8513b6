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

Every sensor has ``expire_after`` (:func:`expire_after_for`: three state intervals, at least
``EXPIRE_MIN`` s): the agent sends the state at least every state interval while frames are
processed, so a pipeline that froze while its connection lives (the last will does not fire) shows
its sensors unavailable instead of its last values. The fps sensor's template gives an empty
value (which Home Assistant ignores) while the state has no fps yet. With a live view, the device
links it (``configuration_url``, :func:`reachable_url`).

The configs go through the publisher's latest-value path (retained, sent again after every
reconnection, so a broker that lost its retained messages gets them back). To remove the
entities, publish an empty retained message to each config topic (:func:`config_topics`):
``fer-edge homeassistant remove`` (``fer_edge.homeassistant_remove``) does it with a bare client
that leaves nothing behind; :func:`clear_discovery` does it through an agent's own publisher.
"""

import binascii
import math
import re
import socket
from urllib.parse import urlsplit, urlunsplit

from edge.delivery.url import DEFAULT_PREFIX, check_device_id, check_prefix
from edge.labels import EMOTIONS
from edge.version import __version__

DEFAULT_DISCOVERY_PREFIX = "homeassistant"
NO_FACE = "none"  # the dominant emotion when no face is in view
EXPIRE_MIN = 30  # s: the shortest expire_after
_NOT_ID = re.compile(r"[^A-Za-z0-9_-]")
_ANY_ADDRESS = ("0.0.0.0", "::", "")


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
                "value_template": "{{ value_json.fps | default('') }}",  # none measured yet: ignored
                "state_class": "measurement",
                "unit_of_measurement": "fps",
                "entity_category": "diagnostic",
                "suggested_display_precision": 1,
                "icon": "mdi:speedometer",
            },
        ),
    )


def expire_after_for(state_interval):
    """Seconds after which Home Assistant shows a sensor unavailable without a state message: three
    state intervals (the agent sends the state at least every ``state_interval`` s), at least ``EXPIRE_MIN``."""
    return max(EXPIRE_MIN, int(math.ceil(3 * float(state_interval))))


def reachable_url(url, hostname=None):
    """``url`` with a wildcard address (a live view bound to ``0.0.0.0`` or ``::``) replaced by this
    host's name (``hostname``, default ``socket.gethostname()``), for a link from another machine."""
    parts = urlsplit(url)
    if parts.hostname not in _ANY_ADDRESS:
        return url
    netloc = hostname or socket.gethostname()
    if parts.port:
        netloc += ":{}".format(parts.port)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def discovery_configs(
    device_id,
    prefix=DEFAULT_PREFIX,
    discovery_prefix=DEFAULT_DISCOVERY_PREFIX,
    model_id=None,
    sw_version=None,
    expire_after=None,
    configuration_url=None,
):
    """``[(config topic, config dict)]`` for the agent's sensors (see the module doc).

    ``expire_after``: seconds (:func:`expire_after_for`), None: not set; ``configuration_url``: the
    device's link (the live view), None: none."""
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
    if configuration_url:
        device["configuration_url"] = str(configuration_url)
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
        if expire_after:
            config["expire_after"] = int(expire_after)
        config.update(options)
        out.append(("{}/sensor/{}/{}/config".format(discovery_prefix, node, object_id), config))
    return out


def announce(
    publisher,
    device_id,
    prefix=DEFAULT_PREFIX,
    discovery_prefix=DEFAULT_DISCOVERY_PREFIX,
    model_id=None,
    state_interval=None,
    view_url=None,
):
    """Hand the discovery configs to ``publisher`` (retained, latest value); returns their topics.

    ``state_interval``: the agent's (sets ``expire_after``); ``view_url``: its live view's URL (the
    device's ``configuration_url``, :func:`reachable_url`)."""
    topics = []
    configs = discovery_configs(
        device_id,
        prefix,
        discovery_prefix,
        model_id,
        expire_after=None if state_interval is None else expire_after_for(state_interval),
        configuration_url=reachable_url(view_url) if view_url else None,
    )
    for topic, config in configs:
        publisher.publish_retained(topic, config)
        topics.append(topic)
    return topics


def config_topics(device_id, discovery_prefix=DEFAULT_DISCOVERY_PREFIX):
    """The agent's discovery config topics."""
    return [topic for topic, _ in discovery_configs(device_id, discovery_prefix=discovery_prefix)]


def clear_discovery(publisher, device_id, discovery_prefix=DEFAULT_DISCOVERY_PREFIX):
    """Remove the agent's entities from Home Assistant through an agent's own ``publisher`` (its
    status stays as that agent leaves it): an empty retained message per config topic. From
    anywhere else use ``fer-edge homeassistant remove``, which leaves nothing behind."""
    topics = config_topics(device_id, discovery_prefix)
    for topic in topics:
        publisher.publish_retained(topic, None)
    return topics
