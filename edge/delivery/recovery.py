"""What keeps the outbox's queue usable when its file is not (Python 3.6, stdlib only).

:class:`QueueRecovery` is the half of :class:`edge.delivery.outbox.Outbox` that opens and locks the
queue file and handles its failures; both share the outbox's attributes. Failures never stop the
agent: the readable rows of a corrupt file are salvaged (read in ranges around the damaged pages)
into a new file, the corrupt one is renamed aside (``<file>.corrupt-<UTC time>``), and numbering
continues in the same stream from the highest sequence number seen (in the file's metadata or the
salvaged events). A short disk is :mod:`edge.delivery.room`'s: the file stays within the space
there is, dropping its oldest rows. An I/O error, or a full disk where no room can be made
(nothing to drop, or not even a deletion can be written), moves the queued rows to memory (a full
disk's file is removed: its rows are in memory now); while in memory, a new file is tried every
``retry_interval`` seconds and once more at the end of the run (``persist``), an old file still
there renamed aside first, so nothing is sent twice. The rows go back newest first while the disk
has room: the newest that fit are kept, the oldest dropped and counted. A second agent with the
same device id and data directory cannot use the file (it is locked): that agent queues in memory.
"""

import logging
import os
import sqlite3
from typing import Any, Callable, Dict, List, Optional, Union

try:
    import fcntl
except ImportError:  # pragma: no cover - not a Linux/macOS device
    fcntl = None  # type: ignore[assignment]

from edge.delivery.room import DiskRoom
from edge.delivery.store import (
    FORMAT_VERSION,
    UNSENT_RETAINED,
    MemoryStore,
    SqliteStore,
    _remove_files,
    highest_event_seq,
    is_corruption,
    is_full,
    move_aside,
    new_stream_id,
    salvage,
)

log = logging.getLogger(__name__)


class QueueRecovery(object):
    """The opening and failure methods of the outbox (a mixin; see the module doc).

    The attributes below are the outbox's (set in ``Outbox.__init__``), declared here for the
    methods of this half.
    """

    path: Optional[str]
    retry_interval: float
    dropped: int
    sent_upto: int
    problems: List[str]
    stream: Optional[str]
    event_seq: int
    store: Union[MemoryStore, SqliteStore]
    _max_pages: Optional[int]
    _clock: Callable[[], float]
    _room: Optional[DiskRoom]
    _lock_handle: Any
    _fallback_at: Optional[float]

    def _problem(self, text):
        self.problems.append(text)
        log.error("outbox: %s", text)

    def _open(self):
        if self.path is None:
            return MemoryStore()
        try:
            # exist_ok: two agents starting together both see no folder and both create it
            os.makedirs(os.path.dirname(self.path), 0o700, exist_ok=True)
            self._lock_file(self.path)
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

    def _lock_file(self, path):
        if fcntl is None:
            return
        handle = open(path + ".lock", "a")
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
        salvaged_meta: Dict[str, Any] = {
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
        memory.meta[UNSENT_RETAINED] = old.meta.get(UNSENT_RETAINED, "")
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

    def _maybe_restore(self, force=False):
        """Back to disk after a fallback, every ``retry_interval`` seconds (``force``: now). The
        rows go in newest first, a few at a time, while the disk has room: the newest that fit are
        kept on disk, the older ones are dropped and counted (a short disk keeps what fits rather
        than everything in memory, lost at the end of the run)."""
        if self._fallback_at is None or self.path is None or self._lock_handle is None:
            return
        if not force and self._clock() - self._fallback_at < self.retry_interval:
            return
        self._fallback_at = self._clock()
        store = None
        try:
            if os.path.exists(self.path):
                move_aside(self.path)
            store = SqliteStore(self.path, self._max_pages)
            self._seed(store, [])
            if self.store.meta.get(UNSENT_RETAINED):
                store.insert_many([], {UNSENT_RETAINED: self.store.meta[UNSENT_RETAINED]})
        except (OSError, IOError, sqlite3.Error) as exc:
            if store is not None:
                store.close()
                _remove_files(self.path)
            log.warning("outbox: %s still unusable (%s); queuing in memory", self.path, exc)
            return
        rows = self.store.all_rows()
        try:
            end = self._disk_room().fill(store, rows)
        except sqlite3.Error as exc:
            store.close()
            _remove_files(self.path)
            log.warning("outbox: %s still unusable (%s); queuing in memory", self.path, exc)
            return
        if rows and end == len(rows):
            store.close()
            _remove_files(self.path)
            log.warning("outbox: %s has no room yet; queuing in memory", self.path)
            return
        if end:
            self.dropped += end
            self._disk_room().count(end)
            self._problem(
                "back on disk in {} with the newest {} message(s) that fit; the {} oldest dropped for lack "
                "of disk space".format(self.path, store.count, end)
            )
        else:
            log.warning("outbox: back on disk in %s with %d message(s)", self.path, store.count)
        self.store = store
        self._fallback_at = None

    def _disk_room(self):
        """The disk's room keeper: only a queue with a file (``path``) has one."""
        if self._room is None:
            raise RuntimeError("outbox: an in-memory queue has no disk room")  # a bug: callers check the store
        return self._room

    def _insert(self, row, meta):
        """Insert one row; into a file, within the space its disk has (:mod:`edge.delivery.room`
        drops the oldest rows when it needs room). SQLite errors other than a full disk are raised."""
        store = self.store
        if store.kind != "disk":
            store.insert(row, meta)
            return
        oldest = lambda limit: store.sizes_after(self.sent_upto, limit)  # noqa: E731
        self.dropped += self._disk_room().before_insert(store, len(row.payload), oldest)
        try:
            store.insert(row, meta)
        except sqlite3.Error as exc:
            if not is_full(exc):
                raise
            self.dropped += self._disk_room().after_full(store, exc, len(row.payload), oldest)
            store.insert(row, meta)  # a second failure moves the queue to memory (_failed)

    def _guard(self, action):
        """Run ``action()`` on the store; on a SQLite error handle it and run it once more."""
        try:
            return action()
        except sqlite3.Error as exc:
            self._failed(exc)
        return action()
