"""Where an agent sends its messages: the :class:`Publisher` interface and the in-memory
publisher (tests, agents without a broker). The MQTT publisher is :mod:`edge.delivery.mqtt`,
the DeepLens one :mod:`deeplens.greengrass_publisher`. No paho here; Python 3.6 compatible.

Three kinds of message:

* **queued** (``publish_event``, ``publish_stats``, ``publish_track``): every one matters; the MQTT
  publisher puts them in its outbox (on disk), in order, delivered at least once;
* **latest value** (``publish_state``, ``publish_retained``): retained messages that describe the
  present (the device state, Home Assistant discovery configs). Only the newest value per topic
  is kept and sent (a value not sent yet is replaced by a newer one); they are sent again after
  every reconnection, so a broker that lost its retained store gets them back;
* **status** (online/offline, the last will): the publisher's own.
"""

import abc

from edge.delivery.url import DEFAULT_PREFIX, Topics, check_device_id, check_prefix, topics
from edge.events.payloads import status_payload, to_json

TRACKS_KIND = "tracks"
STATE_KIND = "state"


def device_topic(prefix, device_id, kind):
    """``<prefix>/<device_id>/<kind>`` for the kinds beyond ``topics()``: ``tracks``, ``state``."""
    if kind not in (TRACKS_KIND, STATE_KIND):
        raise ValueError("unknown topic kind {!r}: expected {} or {}".format(kind, TRACKS_KIND, STATE_KIND))
    return "{}/{}/{}".format(check_prefix(prefix), check_device_id(device_id), kind)


def retained_text(payload):
    """The text of a latest-value message: a dict as compact JSON, text as is, None or "" as the
    empty payload (which clears a retained message on the broker)."""
    if payload is None:
        return ""
    if isinstance(payload, (str, bytes)):
        return payload.decode("utf-8") if isinstance(payload, bytes) else payload
    return to_json(payload)


class Publisher(abc.ABC):
    """Where an agent sends its messages. Use as ``start()`` ... ``close()`` or ``with``.

    Every publisher sets ``device_id`` (the id in its topics and payloads) and ``topics``
    (``edge.delivery.url.Topics``: its ``events``, ``status`` and ``stats`` topics) when made, and
    implements the abstract methods; the others have defaults for a publisher without a queue.
    """

    device_id: str
    topics: Topics

    @abc.abstractmethod
    def start(self):
        """Begin publishing (connect in the background); returns at once."""

    @abc.abstractmethod
    def publish_event(self, event):
        """Queue one emotion event dict; True if accepted. Never blocks on the network."""

    @abc.abstractmethod
    def publish_stats(self, stats):
        """Queue one stats dict; True if accepted."""

    @abc.abstractmethod
    def publish_track(self, message):
        """Queue one face-track message (``edge.tracking.lifecycle``) for ``<prefix>/<device_id>/tracks``; True
        if accepted. Never blocks on the network."""

    @abc.abstractmethod
    def publish_retained(self, topic, payload):
        """Set the retained value of ``topic`` (a dict as JSON, text, or None to clear it): only the
        newest value per topic is sent; sent again after a reconnection. True if accepted."""

    def publish_state(self, state):
        """Set the retained device state (``<prefix>/<device_id>/state``)."""
        return self.publish_retained(self.state_topic, state)

    def publish_status(self, state, **extra):
        """An extra status message (e.g. ``online`` with ``phase='loading-model'``) where the agent
        reports its own phases (the DeepLens Greengrass publisher); True if sent. Default: False,
        the publisher's own online/offline status is all it publishes."""
        return False

    @property
    def tracks_topic(self):
        return self.topics.events.rsplit("/", 1)[0] + "/" + TRACKS_KIND

    @property
    def state_topic(self):
        return self.topics.events.rsplit("/", 1)[0] + "/" + STATE_KIND

    @abc.abstractmethod
    def close(self, timeout=5.0):
        """Flush (at most ``timeout`` s), publish the offline status and disconnect."""

    @property
    @abc.abstractmethod
    def connected(self):
        """True while messages can leave (connected to the broker, or started for local publishers)."""

    @property
    def counters(self):
        """Delivery counters (dict of ints; default: none)."""
        return {}

    @property
    def outbox(self):
        """The queue of messages not yet delivered (``edge.delivery.outbox.Outbox``: ``storage``
        ``disk`` or ``memory``, ``depth``, ``problems``); None for a publisher that keeps none."""
        return None

    def delivery(self):
        """The ``delivery`` object of stats payloads (stats.schema.json: queued, queued_bytes,
        dropped, failed, acknowledged, reconnects, disconnects, taken_over, connected, storage), or
        None for a publisher without a queue to report (stats then go out without one)."""
        return None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class MemoryPublisher(Publisher):
    """Keeps messages in lists (tests, agents run without a broker).

    ``events``, ``stats``, ``tracks`` and ``statuses`` hold the messages as decoded JSON (each went
    through :func:`edge.events.payloads.to_json`, so unserializable values fail here as they would over
    MQTT); ``retained`` maps topics to their latest value (decoded JSON, or text; a cleared topic
    is removed); ``messages`` holds ``(topic, payload_text)`` in publish order. ``keep``: how many of the
    newest messages each list holds (None: all, for tests); an agent running for days without a
    broker passes a bound so its memory stays flat.
    """

    def __init__(self, device_id="memory", prefix=DEFAULT_PREFIX, keep=None):
        self.device_id = check_device_id(device_id)
        self.topics = topics(prefix, device_id)
        self.keep = keep
        self.events = []
        self.stats = []
        self.tracks = []
        self.statuses = []
        self.retained = {}
        self.messages = []
        self._published = 0
        self._connected = False
        self._closed = False

    def _put(self, topic, obj, target):
        import json

        text = to_json(obj)
        for kept, item in ((self.messages, (topic, text)), (target, json.loads(text))):
            kept.append(item)
            if self.keep is not None and len(kept) > self.keep:
                del kept[0]
        if target is not self.statuses:
            self._published += 1
        return True

    def start(self):
        if not self._connected and not self._closed:
            self._connected = True
            self._put(self.topics.status, status_payload(self.device_id, "online"), self.statuses)

    def publish_event(self, event):
        if self._closed:
            return False
        return self._put(self.topics.events, event, self.events)

    def publish_stats(self, stats):
        if self._closed:
            return False
        return self._put(self.topics.stats, stats, self.stats)

    def publish_track(self, message):
        if self._closed:
            return False
        return self._put(self.tracks_topic, message, self.tracks)

    def publish_retained(self, topic, payload):
        import json

        if self._closed:
            return False
        text = retained_text(payload)
        self.messages.append((topic, text))
        if self.keep is not None and len(self.messages) > self.keep:
            del self.messages[0]
        if not text:
            self.retained.pop(topic, None)
            return True
        try:
            self.retained[topic] = json.loads(text)
        except ValueError:
            self.retained[topic] = text
        return True

    def close(self, timeout=5.0):
        if self._closed:
            return
        self._closed = True
        if self._connected:
            self._put(self.topics.status, status_payload(self.device_id, "offline", reason="shutdown"), self.statuses)
        self._connected = False

    @property
    def connected(self):
        return self._connected

    @property
    def counters(self):
        return {
            "published": self._published,
            "acknowledged": self._published,
            "dropped": 0,
            "failed": 0,
            "in_flight": 0,
            "queued": 0,
            "queued_bytes": 0,
            "connects": 1 if self.statuses else 0,
            "reconnects": 0,
            "disconnects": 0,
            "connect_failures": 0,
        }


class PublisherWrapper(Publisher):
    """A publisher that hands everything to ``inner``; subclasses add to ``publish_event`` or
    ``publish_stats`` (print, write a file) and still deliver through the wrapped publisher.
    ``device_id``, ``topics``, ``outbox``, ``delivery()`` and the counters are the wrapped publisher's."""

    def __init__(self, inner):
        self.inner = inner
        self.device_id = inner.device_id
        self.topics = inner.topics

    def start(self):
        self.inner.start()

    def publish_event(self, event):
        return self.inner.publish_event(event)

    def publish_stats(self, stats):
        return self.inner.publish_stats(stats)

    def publish_track(self, message):
        return self.inner.publish_track(message)

    def publish_retained(self, topic, payload):
        return self.inner.publish_retained(topic, payload)

    def publish_state(self, state):
        return self.inner.publish_state(state)

    def publish_status(self, state, **extra):
        return self.inner.publish_status(state, **extra)

    @property
    def tracks_topic(self):
        return self.inner.tracks_topic

    @property
    def state_topic(self):
        return self.inner.state_topic

    def close(self, timeout=None):
        if timeout is None:
            self.inner.close()
        else:
            self.inner.close(timeout)

    @property
    def connected(self):
        return self.inner.connected

    @property
    def counters(self):
        return self.inner.counters

    @property
    def outbox(self):
        return self.inner.outbox

    def delivery(self):
        return self.inner.delivery()

    def __repr__(self):
        return repr(self.inner)
