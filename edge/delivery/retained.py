"""Latest-value messages: retained MQTT messages that describe the present (Python 3.6 compatible).

The device state and Home Assistant's discovery configs are not events: only their newest value
matters. :class:`LatestValues` keeps one payload per topic; a value that was not sent yet is
replaced by a newer one (after an outage the broker gets the current state once, not the
backlog), and :meth:`LatestValues.resend_all` marks every topic to be sent again (after each
reconnection, so that a broker that restarted without persistence gets them back). They are not
written to the outbox.
"""

import collections
import threading


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

    @property
    def pending(self):
        with self._lock:
            return len(self._dirty)

    def values(self):
        with self._lock:
            return collections.OrderedDict(self._values)
