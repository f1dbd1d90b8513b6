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
are not in flight are deleted and counted in ``dropped``; nothing else is ever dropped.

Event ids: the outbox numbers events (``seq`` 1, 2, 3, ...) within a *stream*, a random id made
when the queue file is created and kept with it; ``event_id`` is ``<stream>-<seq>``. Both survive
restarts, so consumers de-duplicate on ``(device_id, event_id)`` and see a gap in ``seq`` where
events were dropped.

Failures never stop the agent: the readable rows of a corrupt file are salvaged (read in ranges
around the damaged pages) into a new file, the corrupt one is renamed aside
(``<file>.corrupt-<UTC time>``), and numbering continues in the same stream from the highest
sequence number seen (in the file's metadata or the salvaged events); a
full disk or another I/O error moves the queued rows to memory (a full disk's file is removed:
its rows are in memory now); while in memory, a new file is tried every ``retry_interval``
seconds (an old file still there is renamed aside first, so nothing is sent twice).
A second agent with the same device id and data directory cannot use the file (it is locked):
that agent queues in memory.
"""

import logging
import os
import sqlite3
import threading
import time

try:
    import fcntl
except ImportError:  # pragma: no cover - not a Linux/macOS device
    fcntl = None

from edge.delivery.store import (
    FORMAT_VERSION,
    MemoryStore,
    Row,
    SqliteStore,
    _remove_files,
    highest_event_seq,
    is_corruption,
    move_aside,
    new_stream_id,
    queue_path,  # noqa: F401  (edge.delivery.outbox.queue_path: where a device's queue lives)
    salvage,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_EVENTS = 100000
DEFAULT_MAX_BYTES = 100 * 1000 * 1000
DEFAULT_RETRY_INTERVAL = 60.0


class Outbox(object):
    """The bounded, ordered queue (see the module doc). Thread-safe.

    ``path``: the SQLite file (None: memory only). ``max_events`` (0: no count bound) and
    ``max_bytes`` (0: no size bound): the bounds. ``sqlite_max_pages``: tests only (a database
    that fills up like a full disk).
    """

    def __init__(
        self,
        path=None,
        max_events=DEFAULT_MAX_EVENTS,
        max_bytes=DEFAULT_MAX_BYTES,
        retry_interval=DEFAULT_RETRY_INTERVAL,
        sqlite_max_pages=None,
        clock=time.monotonic,
    ):
        if int(max_events) < 0 or int(max_bytes) < 0:
            raise ValueError(
                "outbox bounds must be >= 0 (0: unbounded), got {} events, {} bytes".format(max_events, max_bytes)
            )
        self.path = os.path.abspath(os.path.expanduser(path)) if path else None
        self.max_events = int(max_events)
        self.max_bytes = int(max_bytes)
        self.retry_interval = float(retry_interval)
        self._max_pages = sqlite_max_pages
        self._clock = clock
        self._lock = threading.RLock()
        self.dropped = 0  # rows deleted by the bounds (or refused: larger than max_bytes)
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

    # -- opening, failures ------------------------------------------------------------------

    def _problem(self, text):
        self.problems.append(text)
        log.error("outbox: %s", text)

    def _open(self):
        if self.path is None:
            return MemoryStore()
        try:
            folder = os.path.dirname(self.path)
            if not os.path.isdir(folder):
                os.makedirs(folder, 0o700)
            self._lock_file()
        except (OSError, IOError) as exc:
            self._problem("cannot use {} ({}); queuing in memory (not kept across restarts)".format(self.path, exc))
            self._fallback_at = self._clock()
            return MemoryStore()
        try:
            return SqliteStore(self.path, self._max_pages)
        except sqlite3.Error as exc:
            if is_corruption(exc):
                return self._recreate(exc)
            self._problem("cannot open {} ({}); queuing in memory".format(self.path, exc))
            self._fallback_at = self._clock()
            return MemoryStore()

    def _lock_file(self):
        if fcntl is None:
            return
        handle = open(self.path + ".lock", "a")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (OSError, IOError):
            handle.close()
            raise OSError(
                "the queue is locked by another process (another agent with this device id and data directory?)"
            ) from None
        self._lock_handle = handle

    def _recreate(self, exc):
        """The file is corrupt: salvage its readable rows, rename it aside and start a new file
        holding them, numbering on from the highest sequence seen (memory if that fails)."""
        rows, meta, lost = salvage(self.path)
        if meta.get("stream") and not self.stream:
            self.stream = meta["stream"]
        self.event_seq = max(self.event_seq, highest_event_seq(rows, meta))
        salvaged_meta = {
            "stream": self.stream or meta.get("stream") or new_stream_id(),
            "event_seq": self.event_seq,
            "format": FORMAT_VERSION,
        }
        self.stream = salvaged_meta["stream"]
        try:
            moved = move_aside(self.path)
            store = SqliteStore(self.path, self._max_pages)
            store.insert_many(rows, salvaged_meta)
        except (OSError, IOError, sqlite3.Error) as exc2:
            self._problem(
                "{} is corrupt ({}) and could not be replaced ({}); its {} readable message(s) "
                "are queued in memory".format(self.path, exc, exc2, len(rows))
            )
            self._fallback_at = self._clock()
            memory = MemoryStore()
            for row in rows:
                memory.insert(row)
            memory.meta.update((k, str(v)) for k, v in salvaged_meta.items())
            return memory
        self._problem(
            "{} was corrupt ({}): {} readable message(s) salvaged into a new queue{}, the file moved "
            "to {}; event numbering goes on from {}".format(
                self.path,
                exc,
                len(rows),
                " ({} unreadable row number(s) lost)".format(len(lost)) if lost else "",
                moved,
                self.event_seq,
            )
        )
        return store

    def _write_meta(self, values):
        if isinstance(self.store, SqliteStore):
            self.store.insert_many([], values)
        else:
            self.store.meta.update((k, str(v)) for k, v in values.items())

    def _failed(self, exc):
        """A SQLite error during operation: recreate a corrupt file, otherwise go to memory."""
        old = self.store
        if not isinstance(old, SqliteStore):  # pragma: no cover - memory does not raise sqlite errors
            raise exc
        if is_corruption(exc):
            old.close()
            self.store = self._recreate(exc)
            if isinstance(self.store, SqliteStore):
                self._seed(self.store, [])
            return
        try:
            rows = old.all_rows()
        except sqlite3.Error:
            rows = None
        old.close()
        memory = MemoryStore()
        for row in rows or []:
            memory.insert(row)
        memory.meta.update({"stream": self.stream, "event_seq": str(self.event_seq)})
        if rows is not None and "full" in str(exc).lower():
            _remove_files(self.path)  # its rows are in memory now; frees the space it held
            self._problem(
                "{}: {}; its {} message(s) moved to memory and the file removed, queuing in "
                "memory until a new file can be created".format(self.path, exc, len(rows))
            )
        elif rows is not None:
            self._problem(
                "{}: {}; its {} message(s) moved to memory, queuing in memory until a new "
                "file can be created (this one is then renamed aside)".format(self.path, exc, len(rows))
            )
        else:
            self._problem(
                "{}: {}; the file could not be read and is left in place, queuing in memory".format(self.path, exc)
            )
        self.store = memory
        self._fallback_at = self._clock()

    def _seed(self, store, rows):
        store.insert_many(rows, {"stream": self.stream, "event_seq": self.event_seq, "format": FORMAT_VERSION})

    def _maybe_restore(self):
        """Back to disk after a fallback, every ``retry_interval`` seconds."""
        if self._fallback_at is None or self.path is None or self._lock_handle is None:
            return
        if self._clock() - self._fallback_at < self.retry_interval:
            return
        self._fallback_at = self._clock()
        try:
            if os.path.exists(self.path):
                move_aside(self.path)
            store = SqliteStore(self.path, self._max_pages)
        except (OSError, IOError, sqlite3.Error) as exc:
            log.warning("outbox: %s still unusable (%s); queuing in memory", self.path, exc)
            return
        try:
            self._seed(store, self.store.all_rows())
        except sqlite3.Error as exc:
            store.close()
            _remove_files(self.path)
            log.warning("outbox: %s still unusable (%s); queuing in memory", self.path, exc)
            return
        log.warning("outbox: back on disk in %s with %d message(s)", self.path, store.count)
        self.store = store
        self._fallback_at = None

    def _guard(self, action):
        """Run ``action()`` on the store; on a SQLite error handle it and run it once more."""
        try:
            return action()
        except sqlite3.Error as exc:
            self._failed(exc)
        return action()

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
            self._guard(lambda: self.store.insert(row, meta))
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

    def close(self):
        with self._lock:
            self.store.close()
            if self._lock_handle is not None:
                try:
                    self._lock_handle.close()
                except (OSError, IOError):  # pragma: no cover
                    pass
                self._lock_handle = None
