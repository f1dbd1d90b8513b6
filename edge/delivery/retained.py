"""Latest-value messages: retained MQTT messages that describe the present (Python 3.6 compatible).

The device state and Home Assistant's discovery configs are not events: only their newest value
matters. :class:`LatestValues` keeps one payload per topic; a value that was not sent yet is
replaced by a newer one (after an outage the broker gets the current state once, not the
backlog), and :meth:`LatestValues.resend_all` marks every topic to be sent again (after each
reconnection, so that a broker that restarted without persistence gets them back). They are not
written to the outbox; what the broker did not confirm when the publisher closed is kept in the
queue file for the next start (:func:`keep_unsent`, :func:`restore_unsent`).
"""

import collections
import logging
import threading

log = logging.getLogger(__name__)


class LatestValues(object):
    """Thread-safe ``topic -> payload text``, with the topics still to send in first-set order."""

    def __init__(self):
        self._lock = threading.Lock()
        self._values = collections.OrderedDict()
        self._dirty = collections.OrderedDict()
        self.replaced = 0  # values overwritten before they were sent

    def set(self, topic, text):
        with self._lock:
            if topic in self._dirty:
                self.replaced += 1
            self._values[topic] = text
            self._dirty[topic] = True

    def take(self, limit):
        """Up to ``limit`` ``(topic, text)`` to send now (no longer pending once taken)."""
        out = []
        with self._lock:
            for topic in list(self._dirty)[: max(0, int(limit))]:
                del self._dirty[topic]
                out.append((topic, self._values[topic]))
            for topic, text in out:
                if text == "":  # a cleared topic: sent once, then forgotten
                    self._values.pop(topic, None)
        return out

    def resend_all(self):
        with self._lock:
            for topic in self._values:
                self._dirty[topic] = True

    def unconfirmed(self, sent_topics):
        """``(topic, text)`` of the values not sent yet, or sent and not acknowledged (their topics in
        ``sent_topics``): what the broker may not have, in first-set order."""
        with self._lock:
            return [(t, x) for t, x in self._values.items() if t in self._dirty or t in sent_topics]

    @property
    def pending(self):
        with self._lock:
            return len(self._dirty)

    def values(self):
        with self._lock:
            return collections.OrderedDict(self._values)


def restore_unsent(outbox, latest, status_topic):
    """What an earlier run kept because the broker did not confirm it (``keep_unsent``): its latest
    values go back into ``latest`` (a newer value this run sets replaces them); returns the offline
    status text to send before this run's ``online`` (or None), and whether anything was restored."""
    stale, restored = None, False
    for topic, text in outbox.unsent_retained():
        restored = True
        if topic == status_topic:
            stale = text
        else:
            latest.set(topic, text)
    return stale, restored


def keep_unsent(outbox, latest, status_topic, offline_text, unacknowledged_topics):
    """At close: keep in the queue file what the broker did not confirm, for the next start to send
    at its first connection: ``offline_text`` (the offline status of this stop; None when the broker
    acknowledged it) and the latest values not sent or not acknowledged (their topics in
    ``unacknowledged_topics``). A broker that crashed, then an agent stopped before it could
    reconnect: nothing else can correct the broker's ``online`` and last state."""
    unsent = [(status_topic, offline_text)] if offline_text else []
    unsent.extend(latest.unconfirmed(unacknowledged_topics))
    outbox.keep_unsent_retained(unsent)
    if unsent and outbox.storage == "disk":
        log.info(
            "MQTT: %d retained message(s) (%s) not confirmed by the broker; kept in %s for the next start",
            len(unsent),
            ", ".join(t for t, _ in unsent),
            outbox.path,
        )
