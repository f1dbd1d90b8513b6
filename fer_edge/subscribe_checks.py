"""What ``fer-edge subscribe`` lets through to the terminal: valid messages, printable text.

Anyone allowed to publish under ``<prefix>/#`` can send anything. :class:`MessageCheck` checks
each received message against its topic kind's JSON Schema (:class:`edge.events.validate.PayloadChecker`,
a tolerant reader: unknown keys are ignored) before a view reads it; an invalid one is skipped,
counted per topic, and logged once per topic (the first one, with what is wrong), and the views go
on. :func:`printable` makes any text safe to print: control characters (C0, DEL, C1: terminal
escape sequences such as ``ESC]0;...BEL`` or ``ESC[2J``, and line breaks), Unicode format
characters (bidirectional overrides) and line/paragraph separators are shown as ``\\x1b``-style
escapes instead of being sent to the terminal.
"""

import collections
import logging
import threading
import unicodedata

from edge.delivery.subscribe import Message
from edge.events.validate import PayloadChecker

log = logging.getLogger(__name__)

_UNSAFE_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")


def _escape(char: str) -> str:
    code = ord(char)
    return "\\x{:02x}".format(code) if code < 0x100 else "\\u{:04x}".format(code)


def printable(text: object) -> str:
    """``str(text)`` with every character a terminal could act on (see the module doc) escaped."""
    text = str(text)
    if text.isprintable():  # the common case (isprintable is False for every unsafe character)
        return text
    return "".join(_escape(c) if unicodedata.category(c) in _UNSAFE_CATEGORIES else c for c in text)


def is_cleared(message: Message) -> bool:
    """An empty retained message: a retained value was cleared (not a message to check)."""
    return not message.payload and message.retain


class MessageCheck(object):
    """Validates received messages for the views (thread-safe): :meth:`accept` is False for an
    invalid one, which is counted per topic in ``invalid`` and logged the first time its topic has one."""

    def __init__(self) -> None:
        self.checker = PayloadChecker()
        self.invalid: collections.Counter = collections.Counter()  # topic -> invalid messages skipped
        self._lock = threading.Lock()

    def problem(self, message: Message) -> str | None:
        """What is wrong with the message (None: valid, or a cleared retained value)."""
        if is_cleared(message):
            return None
        if message.data is None:
            return "not JSON"
        return self.checker.problem(message.data, message.kind)

    def accept(self, message: Message) -> bool:
        """True for a valid message; False (counted, logged once per topic) otherwise."""
        problem = self.problem(message)
        if problem is None:
            return True
        with self._lock:
            self.invalid[message.topic] += 1
            first = self.invalid[message.topic] == 1
        if first:
            log.warning(
                "skipped a message on %s that is not a valid fer-edge message (%s); further invalid "
                "messages on this topic are counted, not logged",
                printable(message.topic),
                printable(problem),
            )
        return False

    @property
    def skipped(self) -> int:
        """Invalid messages skipped, all topics together."""
        with self._lock:
            return sum(self.invalid.values())

    def summary(self) -> str | None:
        """``skipped N invalid messages: <topic> (n), ...`` (the most first), or None when none was."""
        with self._lock:
            counts = self.invalid.most_common()
        if not counts:
            return None
        total = sum(n for _, n in counts)
        return "skipped {} invalid message{}: {}".format(
            total, "" if total == 1 else "s", ", ".join("{} ({})".format(printable(t), n) for t, n in counts)
        )
