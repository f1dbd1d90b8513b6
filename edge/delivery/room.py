"""Room for the outbox's SQLite file on a short disk (Python 3.6, stdlib only).

The queue uses the space there is. With less free than the default WAL needs (4 MB plus twice
the reserve) the WAL is checkpointed every 64 KB, so it does not take the rows' space (each
single-row commit writes about 12 KB to it). With less than the reserve free (default 256 KB: for
the WAL and for other programs), or when SQLite says the disk is full, the WAL is checkpointed and
truncated and the file stops growing: a new row takes the pages of the oldest rows not in flight,
which are dropped about 64 KB at a time, counted and logged (an error when it starts, a warning
at the first drop). :meth:`DiskRoom.fill` writes a memory queue back newest first while the disk
has room: the newest that fit are kept, the rest is for the caller to drop and count.
"""

import logging
import os
import sqlite3

from edge.delivery.store import WAL_LIMIT, WAL_PAGES, disk_free, is_full

log = logging.getLogger(__name__)

DEFAULT_DISK_RESERVE = 256 * 1024  # bytes the queue leaves free on its disk (its WAL, other programs)
SHORT_WAL_PAGES = 16  # the WAL while the disk is short: checkpointed every 16 pages (64 KB)
ROOM_BATCH_BYTES = 64 * 1024  # payload bytes dropped at a time to make room on a short disk
FILL_CHUNK = 64  # rows per transaction when a memory queue goes back to disk


class DiskRoom(object):
    """Keeps the queue file at ``path`` within the space of its disk (see the module doc).

    ``reserve``: bytes left free; ``problem(text)``: reports that the disk became short. The
    ``oldest(limit)`` argument of the methods gives ``[(seq, payload bytes)]`` of the oldest rows
    that may be dropped (not in flight); they return how many rows they dropped (also counted in
    ``dropped``).
    """

    def __init__(self, path, reserve=DEFAULT_DISK_RESERVE, problem=log.error):
        self.path = path
        self.folder = os.path.dirname(path)
        self.reserve = int(reserve)
        self.problem = problem
        self.short = None  # "disk": nearly full, "full": SQLite said so; the file does not grow
        self.small_wal = False  # little room: the WAL of ``store`` is kept small
        self.store = None  # the store that WAL setting is for (a new file starts with the default)
        self.dropped = 0  # rows dropped for space

    def _adopt(self, store):
        if store is not self.store:
            self.store, self.short, self.small_wal = store, None, False

    def before_insert(self, store, need, oldest):
        """While the disk has less than ``reserve`` bytes free the file must not grow: the oldest
        rows are dropped when the free pages inside it cannot take ``need`` more bytes."""
        self._adopt(store)
        free = disk_free(self.folder)
        if free is None:
            return 0
        if not self.small_wal and free < WAL_LIMIT + 2 * self.reserve:
            self.small_wal = True
            store.set_wal(SHORT_WAL_PAGES)
            log.info("outbox: %d bytes free on the disk holding %s: a small WAL (checkpointed often)", free, self.path)
        elif self.small_wal and free >= WAL_LIMIT + 4 * self.reserve:
            self.small_wal = False
            store.set_wal(WAL_PAGES)
        if self.short == "disk" and free >= 2 * self.reserve:
            self.short = None
            log.warning(
                "outbox: the disk holding %s has room again (%d bytes free); %d message(s) were dropped for space",
                self.path,
                free,
                self.dropped,
            )
        if free >= self.reserve:
            return 0
        if not self.short:
            self._go_short(store, "disk", "{} bytes free".format(free))
            store.checkpoint()  # the WAL's space back
            if (disk_free(self.folder) or 0) >= self.reserve:
                return 0
        return self._make_room(store, need, oldest)

    def after_full(self, store, exc, need, oldest):
        """SQLite said the disk is full: small WAL, checkpointed, room made by dropping the oldest
        (the caller tries its insert once more; a second failure is its to handle)."""
        self._adopt(store)
        self._go_short(store, "full", "SQLite: {}".format(exc))
        store.checkpoint()
        return self._make_room(store, need, oldest, force=True)

    def _go_short(self, store, kind, why):
        if not self.small_wal:
            self.small_wal = True
            store.set_wal(SHORT_WAL_PAGES)
        if not self.short:
            self.short = kind
            self.problem(
                "the disk holding {} is nearly full ({}; the queue leaves {} bytes free): the queue stays "
                "in the space it has and drops its oldest messages when it needs room (counted in "
                "delivery.dropped)".format(self.path, why, self.reserve)
            )

    def _make_room(self, store, need, oldest, force=False):
        """Drop the oldest rows (about ``ROOM_BATCH_BYTES`` of payload) unless the file's free pages
        can take ``need`` more bytes (``force``: drop anyway)."""
        if not force and store.reusable() >= need + 4 * store.page_size:
            return 0
        want = max(ROOM_BATCH_BYTES, need)
        victims, size = [], 0
        for seq, n in oldest(max(16, want // 64)):
            victims.append(seq)
            size += n
            if size >= want:
                break
        if not victims:
            return 0  # everything queued is in flight: nothing to drop
        store.delete(victims)
        self.count(len(victims))
        return len(victims)

    def count(self, n):
        """``n`` rows dropped for space (logged: a warning the first time, then at debug level)."""
        first = self.dropped == 0
        self.dropped += n
        (log.warning if first else log.debug)(
            "outbox: disk short: dropped the %d oldest message(s) to make room (%d so far)%s",
            n,
            self.dropped,
            "; later drops are logged at debug level and counted in delivery.dropped" if first else "",
        )

    def fill(self, store, rows):
        """Write ``rows`` (oldest first) into the new file ``store``, newest first, while the disk has
        room (a transaction that does not fit is retried smaller). Returns how many of the oldest
        were not written; raises the SQLite errors other than a full disk."""
        self._adopt(store)
        free = disk_free(self.folder)
        if free is not None and free < WAL_LIMIT + 2 * self.reserve:
            self.small_wal = True
            store.set_wal(SHORT_WAL_PAGES)
        end, size = len(rows), FILL_CHUNK
        while end:
            free = disk_free(self.folder)
            if free is not None and free < self.reserve:
                break
            chunk = rows[max(0, end - size) : end]
            try:
                store.insert_many(chunk)
            except sqlite3.Error as exc:
                if not is_full(exc):
                    raise
                if size == 1:
                    break
                size //= 2  # a smaller transaction may still fit
                continue
            end -= len(chunk)
        return end
