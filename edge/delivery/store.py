"""The outbox's storage: rows in SQLite (WAL) or in memory, and what saves a damaged queue file.

``SqliteStore``/``MemoryStore`` hold the rows of ``edge.delivery.outbox.Outbox`` (one interface: insert,
insert_many, rows_after, sizes_after, delete, all_rows, max_seq, set_wal, close; the SQLite one also
checkpoint and reusable, for a short disk); ``salvage`` reads what is readable of a
corrupt file (in ranges around the damaged pages); ``move_aside`` renames a file (and its WAL and
shared-memory files) to ``<file>.corrupt-<UTC time>``; ``highest_event_seq`` continues the
numbering; ``make_private`` keeps the files 0600. Python 3.6, stdlib only.
"""

import binascii
import collections
import logging
import os
import re
import sqlite3
import stat
import time
from typing import Any, Dict, List

log = logging.getLogger(__name__)

FORMAT_VERSION = "1"
PRIVATE = 0o600  # the queue's files: the events say who was seen and how they felt
WAL_PAGES = 1000  # SQLite's default: the WAL is checkpointed into the file every 1000 pages (4 MB)
WAL_LIMIT = 4194304  # bytes a WAL file is truncated to after a checkpoint
UNSENT_RETAINED = "unsent_retained"  # meta key: retained messages the broker did not confirm at close

Row = collections.namedtuple("Row", "seq topic payload qos retain")


def queue_path(data_dir, device_id):
    """The queue file of ``device_id`` in ``data_dir`` (``~`` expanded; unusual characters of
    the id replaced, with a hash of the id so that two ids never share a file)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", device_id)
    if safe != device_id or safe.startswith("."):
        safe = "{}-{:08x}".format(safe.lstrip("."), binascii.crc32(device_id.encode("utf-8")))
    return os.path.join(os.path.expanduser(data_dir), "outbox-{}.sqlite3".format(safe))


def new_stream_id():
    """16 random hex digits naming a stream of event sequence numbers."""
    return binascii.hexlify(os.urandom(8)).decode("ascii")


def is_full(exc):
    """True for SQLite's "database or disk is full" (SQLITE_FULL: no space left, or the page limit)."""
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower()


def disk_free(folder):
    """Bytes free for this user on the file system holding ``folder`` (None where unknown)."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        return None
    return st.f_bavail * st.f_frsize


def is_corruption(exc):
    """True for SQLite errors meaning the file is damaged (not a database, malformed)."""
    text = str(exc).lower()
    if any(word in text for word in ("malformed", "not a database", "file is encrypted", "corrupt")):
        return True
    return (
        isinstance(exc, sqlite3.DatabaseError)
        and not isinstance(exc, sqlite3.OperationalError)
        and not isinstance(exc, sqlite3.IntegrityError)
    )


class MemoryStore(object):
    """Rows in an ordered dict (a queue that does not survive a restart)."""

    kind = "memory"

    def __init__(self):
        self._rows = collections.OrderedDict()
        self.count = 0
        self.bytes = 0
        self.meta = {}

    def insert(self, row, meta=None):
        self._rows[row.seq] = row
        self.count += 1
        self.bytes += len(row.payload)
        if meta:
            self.meta.update(meta)

    def insert_many(self, rows, meta=None):
        for row in rows:
            self.insert(row)
        if meta:
            self.meta.update((k, str(v)) for k, v in meta.items())

    def rows_after(self, seq, limit):
        out = []
        for key, row in self._rows.items():
            if key > seq:
                out.append(row)
                if len(out) >= limit:
                    break
        return out

    def sizes_after(self, seq, limit):
        return [(r.seq, len(r.payload)) for r in self.rows_after(seq, limit)]

    def delete(self, seqs):
        for seq in seqs:
            row = self._rows.pop(seq, None)
            if row is not None:
                self.count -= 1
                self.bytes -= len(row.payload)

    def all_rows(self):
        return list(self._rows.values())

    def max_seq(self):
        return next(reversed(self._rows)) if self._rows else 0

    def set_wal(self, pages):
        pass

    def close(self):
        pass


def make_private(path):
    """The queue file readable and writable by its owner only (0600), whatever the folder's mode and
    the umask: created so when missing (SQLite gives its -wal and -shm files the same mode), made so
    when an earlier version left it (or its -wal/-shm) 0644. A file that cannot be opened is left to
    SQLite, which reports it as it always did."""
    try:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE)
    except OSError:
        return
    try:
        _tighten(path, os.fstat(handle).st_mode, os.fchmod, handle)
    finally:
        os.close(handle)
    for name in _files_of(path)[1:]:
        try:
            mode = os.stat(name).st_mode
        except OSError:
            continue
        _tighten(name, mode, os.chmod, name)


def _tighten(path, mode, chmod, target):
    if stat.S_IMODE(mode) & ~PRIVATE:
        try:
            chmod(target, PRIVATE)
            log.info("outbox %s: mode %04o made %04o (owner only)", path, stat.S_IMODE(mode), PRIVATE)
        except OSError as exc:
            log.warning("outbox %s: mode %04o, cannot make it %04o (%s)", path, stat.S_IMODE(mode), PRIVATE, exc)


class SqliteStore(object):
    """Rows in a SQLite file (WAL, synchronous=NORMAL). Raises sqlite3 errors; the
    :class:`Outbox` decides what to do with them."""

    kind = "disk"

    def __init__(self, path, max_pages=None):
        self.path = path
        self.meta = {}
        make_private(path)
        self._db = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        try:
            self._setup(max_pages)
        except Exception:
            self._db.close()
            raise

    def _setup(self, max_pages):
        db = self._db
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # effective for new files only
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("outbox %s: journal mode %s (WAL not available here)", self.path, mode)
        db.execute("PRAGMA synchronous=NORMAL")
        self.page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        self.set_wal(WAL_PAGES)
        if max_pages:  # tests: a small database that fills up like a full disk
            db.execute("PRAGMA max_page_count={:d}".format(int(max_pages)))
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError("database disk image is malformed (quick_check: {})".format(check))
        db.execute(
            "CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, "
            "payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL, created REAL NOT NULL)"
        )
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self.meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if "format" not in self.meta:
            self._set_meta({"format": FORMAT_VERSION})
        count, size = db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM messages").fetchone()
        self.count, self.bytes = int(count), int(size)

    def set_wal(self, pages):
        """Checkpoint the WAL every ``pages`` pages and keep its file at about that size: a short
        disk gets a small WAL, so the file does not take the space the rows need."""
        pages = int(pages)
        self._db.execute("PRAGMA wal_autocheckpoint={:d}".format(pages))
        limit = WAL_LIMIT if pages >= WAL_PAGES else pages * (self.page_size + 24) + 32
        self._db.execute("PRAGMA journal_size_limit={:d}".format(limit))

    def checkpoint(self):
        """Copy the WAL into the file and truncate it to nothing (gives its disk space back)."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def reusable(self):
        """Bytes of free pages inside the file (rows deleted): new rows take them before the file grows."""
        return int(self._db.execute("PRAGMA freelist_count").fetchone()[0]) * self.page_size

    def _set_meta(self, values):
        self._db.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [(k, str(v)) for k, v in values.items()]
        )
        self.meta.update((k, str(v)) for k, v in values.items())

    def insert(self, row, meta=None):
        self.insert_many([row], meta)

    def insert_many(self, rows, meta=None):
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT INTO messages (seq, topic, payload, qos, retain, created) VALUES (?, ?, ?, ?, ?, ?)",
                [(r.seq, r.topic, sqlite3.Binary(r.payload), r.qos, int(r.retain), time.time()) for r in rows],
            )
            if meta:
                self._set_meta(meta)
            db.execute("COMMIT")
        except Exception:
            self._rollback()
            raise
        self.count += len(rows)
        self.bytes += sum(len(r.payload) for r in rows)

    def _rollback(self):
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def rows_after(self, seq, limit):
        cursor = self._db.execute(
            "SELECT seq, topic, payload, qos, retain FROM messages WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, int(limit)),
        )
        return [Row(s, t, bytes(p), int(q), bool(r)) for s, t, p, q, r in cursor.fetchall()]

    def sizes_after(self, seq, limit):
        cursor = self._db.execute(
            "SELECT seq, LENGTH(payload) FROM messages WHERE seq > ? ORDER BY seq LIMIT ?", (seq, int(limit))
        )
        return [(int(s), int(n)) for s, n in cursor.fetchall()]

    def delete(self, seqs):
        seqs = list(seqs)
        if not seqs:
            return
        db = self._db
        removed = size = 0
        db.execute("BEGIN")
        try:
            for start in range(0, len(seqs), 500):
                chunk = seqs[start : start + 500]
                marks = ",".join("?" * len(chunk))
                n, s = db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM messages WHERE seq IN ({})".format(marks),
                    chunk,
                ).fetchone()
                db.execute("DELETE FROM messages WHERE seq IN ({})".format(marks), chunk)
                removed += int(n)
                size += int(s)
            db.execute("COMMIT")
        except Exception:
            self._rollback()
            raise
        self.count -= removed
        self.bytes -= size
        if self.count == 0:
            db.execute("PRAGMA incremental_vacuum")  # give the pages of a drained backlog back

    def all_rows(self):
        return self.rows_after(-1, 1 << 62)

    def max_seq(self):
        value = self._db.execute("SELECT MAX(seq) FROM messages").fetchone()[0]
        return int(value or 0)

    def close(self):
        try:
            self._db.close()
        except sqlite3.Error:  # pragma: no cover
            pass


SALVAGE_CHUNK = 256


def _read_range(db, lo, hi):
    return [
        Row(int(r[0]), r[1], bytes(r[2]), int(r[3]), bool(r[4]))
        for r in db.execute(
            "SELECT seq, topic, payload, qos, retain FROM messages WHERE seq >= ? AND seq < ? ORDER BY seq", (lo, hi)
        ).fetchall()
    ]


def salvage(path):
    """What can still be read from a damaged queue file: (rows, meta, unreadable seq ranges).

    Rows are read in ranges of sequence numbers; a range that hits a damaged page is split until the
    damage is cornered to single numbers, so one bad page costs only the rows stored on it.
    Never raises: an unreadable file gives ``([], {}, [])``.
    """
    rows: List[Row] = []
    meta: Dict[str, Any] = {}
    lost: List[int] = []  # sequence numbers on damaged pages
    try:
        db = sqlite3.connect("file:{}?mode=ro".format(path), uri=True, timeout=2.0)
    except sqlite3.Error:
        return rows, meta, lost
    try:
        try:
            meta = dict((str(k), str(v)) for k, v in db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error:
            meta = {}
        bounds = None
        for query in ("SELECT MIN(seq), MAX(seq) FROM messages", "SELECT seq FROM messages ORDER BY seq LIMIT 1"):
            try:
                got = db.execute(query).fetchone()
                if got and got[0] is not None:
                    bounds = (int(got[0]), int(got[-1]) if len(got) > 1 else None)
                    break
            except sqlite3.Error:
                continue
        if bounds is None:
            return rows, meta, lost
        lo, hi = bounds
        if hi is None:  # MAX failed (damaged index): probe upwards
            hi = lo + max(SALVAGE_CHUNK, int(meta.get("event_seq", 0) or 0) * 2 + SALVAGE_CHUNK)
        todo = [(start, min(start + SALVAGE_CHUNK, hi + 1)) for start in range(lo, hi + 1, SALVAGE_CHUNK)]
        while todo:
            a, b = todo.pop(0)
            try:
                rows.extend(_read_range(db, a, b))
            except sqlite3.Error:
                if b - a <= 1:
                    lost.append(a)
                else:
                    mid = (a + b) // 2
                    todo[:0] = [(a, mid), (mid, b)]
    finally:
        db.close()
    rows.sort(key=lambda r: r.seq)
    return rows, meta, lost


def highest_event_seq(rows, meta):
    """The highest event ``seq`` known: the metadata's, or the largest in the salvaged event payloads."""
    import json

    best = 0
    try:
        best = int(meta.get("event_seq", 0) or 0)
    except ValueError:
        pass
    for row in rows:
        try:
            data = json.loads(row.payload.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(data, dict) and isinstance(data.get("seq"), int):
            best = max(best, data["seq"])
    return best


def _files_of(path):
    return [path + suffix for suffix in ("", "-wal", "-shm", "-journal")]


def move_aside(path, clock=time.time):
    """Rename the queue file (and its -wal/-shm) to ``<path>.corrupt-<UTC time>``; returns the
    new name of the main file (None when it did not exist)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
    target = "{}.corrupt-{}".format(path, stamp)
    n = 1
    while os.path.exists(target):
        n += 1
        target = "{}.corrupt-{}-{}".format(path, stamp, n)
    moved = None
    for source in _files_of(path):
        if os.path.exists(source):
            dest = target + source[len(path) :]
            os.rename(source, dest)
            if source == path:
                moved = dest
    return moved


def _remove_files(path):
    for name in _files_of(path):
        try:
            os.remove(name)
        except OSError:
            pass
