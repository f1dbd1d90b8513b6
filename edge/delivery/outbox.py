"""The agent's outbox: a bounded, ordered queue of MQTT messages, on disk (SQLite) or in memory.

Every event and stats message is written here first; the publisher's network thread sends the
rows oldest first and deletes each one only after the broker acknowledged it (QoS 1 PUBACK).
What is not acknowledged stays, so it is sent after a reconnection, or after a restart of the
agent (even a SIGKILL or a crash): delivery is at-least-once. Python 3.6, stdlib only.

On disk: ``<data_dir>/outbox-<device_id>.sqlite3`` (one file per device id), SQLite in WAL mode
with ``synchronous=NORMAL``: a committed row survives a crash of the agent; after a power loss
the last transactions before it may be missing (new rows lost, or acknowledged rows that come
back and are sent twice). ``synchronous=FULL`` would close that window at the price of an fsync
per event, which an SD card or eMMC at 30 events/s does not afford.

Bounds: ``max_events`` rows and ``max_bytes`` payload bytes. Beyond them the **oldest** rows that
are not in flight are deleted and counted in ``dropped``. The third bound is the disk: see below.

A short disk: the queue uses the space there is (:mod:`edge.delivery.room`): a small WAL when the
disk has little room; below ``disk_reserve`` (256 KB) free, or when SQLite says the disk is full,
the file stops growing and new rows take the place of the oldest (not in flight), dropped about
64 KB at a time, counted in ``dropped`` and ``dropped_for_space`` and logged. What fits stays on
disk and outlives the process.

Event ids: the outbox numbers events (``seq`` 1, 2, 3, ...) within a *stream*, a random id made
when the queue file is created and kept with it; ``event_id`` is ``<stream>-<seq>``. Both survive
restarts, so consumers de-duplicate on ``(device_id, event_id)`` and see a gap in ``seq`` where
events were dropped.

Failures never stop the agent (:mod:`edge.delivery.recovery`): a corrupt file is salvaged into a
new one, an I/O error or a full disk where no room can be made moves the rows to memory and back
to disk later, a file locked by another agent with the same device id means a memory queue.
"""

import json
import logging
import os
import threading
import time

from edge.delivery.recovery import QueueRecovery
from edge.delivery.room import DEFAULT_DISK_RESERVE, DiskRoom
from edge.delivery.store import (
    UNSENT_RETAINED,
    Row,
    new_stream_id,
    queue_path,  # noqa: F401  (edge.delivery.outbox.queue_path: where a device's queue lives)
    salvage,  # noqa: F401  (fer-edge outbox status reads a damaged file with it)
)

log = logging.getLogger(__name__)

DEFAULT_MAX_EVENTS = 100000
DEFAULT_MAX_BYTES = 100 * 1000 * 1000
DEFAULT_RETRY_INTERVAL = 60.0


class Outbox(QueueRecovery):
    """The bounded, ordered queue (see the module doc). Thread-safe.

    ``path``: the SQLite file (None: memory only). ``max_events`` (0: no count bound) and
    ``max_bytes`` (0: no size bound): the bounds. ``disk_reserve``: bytes left free on the file's
    disk (a short disk: see the module doc). ``sqlite_max_pages``: tests only (a database that
    fills up like a full disk).
    """

    def __init__(
        self,
        path=None,
        max_events=DEFAULT_MAX_EVENTS,
        max_bytes=DEFAULT_MAX_BYTES,
        retry_interval=DEFAULT_RETRY_INTERVAL,
        sqlite_max_pages=None,
        clock=time.monotonic,
        disk_reserve=DEFAULT_DISK_RESERVE,
    ):
        if int(max_events) < 0 or int(max_bytes) < 0:
            raise ValueError(
                "outbox bounds must be >= 0 (0: unbounded), got {} events, {} bytes".format(max_events, max_bytes)
            )
        self.path = os.path.abspath(os.path.expanduser(path)) if path else None
        self.max_events = int(max_events)
        self.max_bytes = int(max_bytes)
        self.retry_interval = float(retry_interval)
        self.disk_reserve = int(disk_reserve)
        self._max_pages = sqlite_max_pages
        self._clock = clock
        self._lock = threading.RLock()
        self.dropped = 0  # rows deleted by the bounds or for disk space (or refused: larger than max_bytes)
        self._room = DiskRoom(self.path, disk_reserve, self._problem) if self.path else None
        self.sent_upto = 0  # highest seq handed to the network; those rows are never dropped
        self.problems = []  # what went wrong with the file, for logs and tests
        self._lock_handle = None
        self._fallback_at = None
        self.stream = None
        self.event_seq = 0
        self.store = self._open()
        self._next_seq = self.store.max_seq() + 1
        self.stream = self.store.meta.get("stream") or new_stream_id()
        try:
            self.event_seq = int(self.store.meta.get("event_seq", 0))
        except ValueError:
            self.event_seq = 0
        if "stream" not in self.store.meta:
            self._guard(lambda: self._write_meta({"stream": self.stream, "event_seq": self.event_seq}))
        if self.store.count:
            log.info(
                "outbox %s: %d message(s) (%d bytes) from an earlier run will be sent first",
                self.path,
                self.store.count,
                self.store.bytes,
            )

    # -- the queue --------------------------------------------------------------------------

    @property
    def storage(self):
        """``disk`` or ``memory``: where the queue is now."""
        return self.store.kind

    @property
    def depth(self):
        with self._lock:
            return self.store.count

    @property
    def size(self):
        with self._lock:
            return self.store.bytes

    def next_event(self):
        """``(seq, event_id)`` for the next event (kept with the queue's next insert)."""
        with self._lock:
            self.event_seq += 1
            return self.event_seq, "{}-{}".format(self.stream, self.event_seq)

    def put(self, topic, payload, qos=1, retain=False):
        """Queue one message (payload text or bytes); False if it alone exceeds ``max_bytes``
        (counted in ``dropped``). May drop the oldest queued rows to keep the bounds."""
        if not isinstance(payload, bytes):
            payload = payload.encode("utf-8")
        with self._lock:
            if self.max_bytes and len(payload) > self.max_bytes:
                self.dropped += 1
                log.warning(
                    "outbox: a %d-byte message is larger than queue_max_bytes %d: dropped", len(payload), self.max_bytes
                )
                return False
            self._maybe_restore()
            row = Row(self._next_seq, topic, payload, int(qos), bool(retain))
            self._next_seq += 1
            meta = {"event_seq": self.event_seq}
            self._guard(lambda: self._insert(row, meta))
            self._enforce_bounds()
            return True

    def _over(self, extra_count=0, extra_bytes=0):
        store = self.store
        return (self.max_events and store.count - extra_count > self.max_events) or (
            self.max_bytes and store.bytes - extra_bytes > self.max_bytes
        )

    def _enforce_bounds(self):
        while self._over():
            store = self.store
            need = max(1, store.count - self.max_events) if self.max_events else 1
            if self.max_bytes and store.bytes > self.max_bytes:
                need = max(need, 64)
            victims, count, size = [], 0, 0
            for seq, n in self._guard(lambda need=need: self.store.sizes_after(self.sent_upto, need)):
                victims.append(seq)
                count += 1
                size += n
                if not self._over(count, size):
                    break
            if not victims:
                return  # everything queued is in flight
            self._guard(lambda victims=victims: self.store.delete(victims))
            if self.dropped == 0:
                log.warning(
                    "outbox full (%d messages, %d bytes): dropping the oldest; later drops are only counted",
                    self.max_events,
                    self.max_bytes,
                )
            self.dropped += len(victims)

    def pending(self, limit):
        """Up to ``limit`` rows not yet handed to the network, oldest first."""
        with self._lock:
            return self._guard(lambda: self.store.rows_after(self.sent_upto, limit))

    def mark_sent(self, seq):
        """Rows up to ``seq`` are with the network now (``pending`` skips them)."""
        with self._lock:
            if seq > self.sent_upto:
                self.sent_upto = seq

    def ack(self, seqs):
        """Delete acknowledged rows."""
        seqs = list(seqs)
        if seqs:
            with self._lock:
                self._guard(lambda: self.store.delete(seqs))

    def keep_unsent_retained(self, messages):
        """Keep ``[(topic, text)]``, retained messages the broker did not confirm when the publisher
        closed (its offline status, the last state), in the queue file for the next start; ``[]``
        clears them. (A memory queue keeps them until the process ends.)"""
        messages = [[str(t), str(x)] for t, x in messages]
        with self._lock:
            if not messages and not self.store.meta.get(UNSENT_RETAINED):
                return
            self._guard(lambda: self._write_meta({UNSENT_RETAINED: json.dumps(messages) if messages else ""}))

    def unsent_retained(self):
        """``[(topic, text)]`` kept by :meth:`keep_unsent_retained` (in an earlier run)."""
        with self._lock:
            text = self.store.meta.get(UNSENT_RETAINED)
        try:
            return [(str(t), str(x)) for t, x in json.loads(text)] if text else []
        except (TypeError, ValueError):
            return []

    def persist(self):
        """A queue that fell back to memory tries the disk once more now (at the end of a run), so
        that what fits outlives the process; the rest is dropped and counted."""
        with self._lock:
            self._maybe_restore(force=True)

    @property
    def dropped_for_space(self):
        """Of ``dropped``, the oldest rows dropped because the disk was short."""
        return self._room.dropped if self._room is not None else 0

    def close(self):
        with self._lock:
            if self.dropped_for_space:
                log.warning(
                    "outbox %s: %d message(s) were dropped for lack of disk space this run (the oldest first)",
                    self.path,
                    self.dropped_for_space,
                )
            self.store.close()
            if self._lock_handle is not None:
                try:
                    self._lock_handle.close()
                except (OSError, IOError):  # pragma: no cover
                    pass
                self._lock_handle = None
