"""``GreengrassPublisher``: the agent's messages through the Greengrass (v1) core of an AWS DeepLens.

A Lambda on a Greengrass v1 core publishes with the Greengrass Core SDK for Python,
``greengrasssdk.client('iot-data').publish(topic=..., payload=...)``: the SDK hands the message to
the local core (an HTTP call to the core's IPC server), and the core forwards it to AWS IoT Core
along the group's subscriptions. DeepLens projects subscribe the project's Lambda to
``$aws/things/<thing>/infer`` (the topic the DeepLens console shows), so that is where every
message goes by default: emotion events, face tracks, device state, stats and status, each a JSON
object whose ``schema`` field (``fer-edge/emotion-event``, ``fer-edge/track``, ``fer-edge/state``,
``fer-edge/stats``, ``fer-edge/status``) tells them apart.
The payloads are the ones every fer-edge agent publishes (``edge.events.payloads``), so the same
consumers and JSON Schemas apply.

``fer_topics=True`` publishes each message a second time on the fer-edge layout
``<prefix>/<device_id>/events|tracks|state|stats|status``. The Greengrass core only forwards topics that have a
subscription in the group, which the DeepLens console does not let you add for a project, so
this is off by default.

Differences from MQTT (``edge.delivery.mqtt.MqttPublisher``): no retained messages and no last will
(the SDK cannot set them), so ``online`` is published once at ``start()`` and ``offline`` at
``close()`` only; the device state goes out as an ordinary message each time it changes, and
other retained messages (Home Assistant discovery, ``publish_retained``) are refused (False,
said once in the log); delivery to the cloud is the core's job (its queue and QoS settings), a
publish here succeeds once the core accepted the message. A failed hand-over (the core's IPC
refusing it) is logged and counted in ``failed``, never raised into the agent loop.

This is the only module of fer-edge that imports ``greengrasssdk``, inside :func:`load_sdk`.
The thing name comes from ``AWS_IOT_THING_NAME``, which the Greengrass core sets for its Lambdas.
Python 3.6/3.7 compatible (device code).
"""

import logging
import os
import threading

from edge.delivery.base import Publisher, device_topic
from edge.delivery.url import DEFAULT_PREFIX, check_device_id, topics
from edge.events.payloads import status_payload, to_json

log = logging.getLogger(__name__)

THING_ENV = "AWS_IOT_THING_NAME"
SDK_MISSING = (
    "greengrasssdk is not importable ({}): the Lambda zip must hold it (fer_edge.bundles.deeplens puts the "
    "installed greengrasssdk package in; pip install 'greengrasssdk>=1.6,<2' on the host that builds it)"
)


class GreengrassError(RuntimeError):
    """The Greengrass SDK or the thing name is missing; the message says what to do."""


def load_sdk():
    """The ``greengrasssdk`` module (GreengrassError with the fix when it cannot be imported)."""
    try:
        import greengrasssdk
    except ImportError as exc:
        raise GreengrassError(SDK_MISSING.format(exc)) from exc
    return greengrasssdk


def thing_name(env=None):
    """``AWS_IOT_THING_NAME`` (GreengrassError when unset: not running on a Greengrass core)."""
    env = os.environ if env is None else env
    name = env.get(THING_ENV, "").strip()
    if not name:
        raise GreengrassError(
            "{} is not set: the Greengrass core sets it for its Lambda functions; "
            "set it by hand to run elsewhere".format(THING_ENV)
        )
    return name


def infer_topic(thing):
    """The DeepLens project topic of a thing: ``$aws/things/<thing>/infer``."""
    return "$aws/things/{}/infer".format(thing)


class GreengrassPublisher(Publisher):
    """Publishes events, stats and status through ``greengrasssdk.client('iot-data')``.

    ``thing``: the IoT thing (default ``$AWS_IOT_THING_NAME``); ``device_id``: the id in payloads
    (default: the thing name); ``infer``: publish on ``$aws/things/<thing>/infer``;
    ``fer_topics``: also on ``<prefix>/<device_id>/events|stats|status``; ``client``: an iot-data
    client (default: ``greengrasssdk.client('iot-data')``, created in :meth:`start`).
    """

    def __init__(
        self,
        thing=None,
        device_id=None,
        prefix=DEFAULT_PREFIX,
        infer=True,
        fer_topics=False,
        client=None,
        queue_full_policy="BestEffort",
    ):
        self.thing = thing or thing_name()
        self.device_id = check_device_id(device_id or self.thing)
        self.prefix = prefix
        self.topics = topics(prefix, self.device_id)
        self.infer_topic = infer_topic(self.thing)
        if not infer and not fer_topics:
            raise ValueError("GreengrassPublisher: choose the infer topic, the fer-edge topics or both")
        self.infer = infer
        self.fer_topics = fer_topics
        if queue_full_policy not in ("BestEffort", "AllOrException"):
            raise ValueError("queue_full_policy must be BestEffort or AllOrException")
        self.queue_full_policy = queue_full_policy
        self.client = client
        self._lock = threading.Lock()
        self._counts = {
            "published": 0,
            "acknowledged": 0,
            "dropped": 0,
            "failed": 0,
            "in_flight": 0,
            "connects": 0,
            "reconnects": 0,
            "disconnects": 0,
            "connect_failures": 0,
        }
        self._started = False
        self._closed = False
        self._warned_retained = False
        self.last_error = None

    def __repr__(self):
        return "GreengrassPublisher(thing={!r}, device_id={!r}, infer={}, fer_topics={})".format(
            self.thing, self.device_id, self.infer, self.fer_topics
        )

    def _targets(self, kind):
        out = []
        if self.infer:
            out.append(self.infer_topic)
        if self.fer_topics:
            out.append(
                getattr(self.topics, kind)
                if kind in self.topics._fields
                else device_topic(self.prefix, self.device_id, kind)
            )
        return out

    def _send(self, kind, obj, counted=True):
        payload = to_json(obj).encode("utf-8")
        ok = True
        for topic in self._targets(kind):
            try:
                self.client.publish(topic=topic, payload=payload, queueFullPolicy=self.queue_full_policy)
            except Exception as exc:  # the core's IPC refusing the message must not end the loop
                ok = False
                self.last_error = "{}: {}".format(type(exc).__name__, exc)
                with self._lock:
                    first = self._counts["failed"] == 0
                    if counted:
                        self._counts["failed"] += 1
                (log.warning if first else log.debug)("Greengrass publish to %s failed: %s", topic, self.last_error)
        if counted:
            with self._lock:
                self._counts["published"] += 1
                if ok:
                    self._counts["acknowledged"] += 1
        return ok

    def start(self):
        """Create the iot-data client and publish the ``online`` status (GreengrassError without the SDK)."""
        if self._started or self._closed:
            return
        if self.client is None:
            self.client = load_sdk().client("iot-data")
        self._started = True
        with self._lock:
            self._counts["connects"] += 1
        log.info("publishing through Greengrass to %s", ", ".join(self._targets("events")))
        self._send("status", status_payload(self.device_id, "online", thing=self.thing), counted=False)

    def publish_status(self, state, **extra):
        """An extra status message (e.g. ``online`` with ``phase='loading-model'``, or ``reason``)."""
        if not self._started or self._closed:
            return False
        return self._send("status", status_payload(self.device_id, state, **extra), counted=False)

    def publish_event(self, event):
        if not self._started or self._closed:
            with self._lock:
                self._counts["dropped"] += 1
            return False
        return self._send("events", event)

    def publish_stats(self, stats):
        if not self._started or self._closed:
            with self._lock:
                self._counts["dropped"] += 1
            return False
        return self._send("stats", stats)

    def publish_track(self, message):
        if not self._started or self._closed:
            with self._lock:
                self._counts["dropped"] += 1
            return False
        return self._send("tracks", message)

    def publish_state(self, state):
        """The device state, as an ordinary message (no retained messages through Greengrass v1)."""
        if not self._started or self._closed:
            return False
        return self._send("state", state, counted=False)

    def publish_retained(self, topic, payload):
        """Refused: the Greengrass v1 SDK cannot publish retained messages (said once in the log)."""
        if not self._warned_retained:
            self._warned_retained = True
            log.warning(
                "retained messages (%s; Home Assistant discovery) cannot be published through Greengrass "
                "v1: skipped. The standalone agent (python3 -m deeplens) publishes them over MQTT",
                topic,
            )
        return False

    def close(self, timeout=5.0, reason="shutdown"):
        """Publish the ``offline`` status (nothing to flush: the core holds what it accepted)."""
        if self._closed:
            return
        if self._started:
            self._send(
                "status", status_payload(self.device_id, "offline", reason=reason, thing=self.thing), counted=False
            )
        self._closed = True

    @property
    def connected(self):
        return self._started and not self._closed

    @property
    def counters(self):
        with self._lock:
            return dict(self._counts)
