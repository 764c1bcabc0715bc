"""The catalog: a record of every object ferryman stored, in SQLite (DESIGN.md lesson 2).

A write is recorded only once it has been verified (size and SHA-256 read
back from the store); the audit later compares this record with each store.
`objects` holds the current state per path, `history` every change, oldest
first. A DELETE marks the object deleted and keeps it. Schema and
migrations are in `schema.py`; why SQLite, WAL and synchronous=FULL is in
docs/decisions/0007-catalog-in-sqlite.md.

Who owns what:

- A `Catalog` owns two sqlite3 connections, opened in `__init__` and
  closed by `close()`; nothing else touches them. `_writer` makes every
  change, `_reader` (query_only) answers every read.
- `_write_lock` guards `_writer`, `_read_lock` guards `_reader`. Each is
  held for exactly one transaction (or one page of `entries()`), never
  across a `yield` and never while calling out of this module. Only
  `close()` holds both, and takes `_write_lock` first.
- Between processes (the workers of one server share the file), SQLite's
  own file locks decide: WAL lets readers go on while one writer commits,
  and every write transaction takes the write lock up front
  (`BEGIN IMMEDIATE`), waiting up to `BUSY_TIMEOUT_MS` for it.

Errors: bad arguments raise ValueError (TypeError for a wrong type; see
`schema.check_*`) before the database is touched; every sqlite3 error
becomes `CatalogError`, with the original as `__cause__`.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from typing import Any

from ferryman.catalog.schema import LATEST, MIGRATIONS, check_fields, check_path, statements
from ferryman.errors import FerrymanError

BUSY_TIMEOUT_MS = 5000
PAGE_SIZE = 500  # rows per transaction in entries()

_SELECT = (
    "SELECT path, size, sha256, mtime_ns, etag, deleted, updated_ns, ino, ctime_ns FROM objects"
)
_GET = _SELECT + " WHERE path = ?"
_PAGE_ALL = _SELECT + " WHERE path > ? ORDER BY path LIMIT ?"
_PAGE_LIVE = _SELECT + " WHERE path > ? AND deleted = 0 ORDER BY path LIMIT ?"
_UPSERT = (
    "INSERT INTO objects (path, size, sha256, mtime_ns, etag, deleted, updated_ns, ino, ctime_ns)"
    " VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET size = excluded.size,"
    " sha256 = excluded.sha256, mtime_ns = excluded.mtime_ns, etag = excluded.etag,"
    " deleted = 0, updated_ns = excluded.updated_ns, ino = excluded.ino,"
    " ctime_ns = excluded.ctime_ns"
)
_LOG = (
    "INSERT INTO history (path, size, sha256, mtime_ns, etag, deleted, at_ns, ino, ctime_ns)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_HISTORY = (
    "SELECT path, size, sha256, mtime_ns, etag, deleted, at_ns, ino, ctime_ns FROM history"
    " WHERE path = ? ORDER BY id"
)
_INTENT = (
    "INSERT OR REPLACE INTO intents (path, op, size, sha256, ident, staged, pid, at_ns)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_INTENTS = "SELECT path, op, size, sha256, ident, staged, pid, at_ns FROM intents ORDER BY path"
_SETTLED = "DELETE FROM intents WHERE path = ?"


class CatalogError(FerrymanError):
    """The catalog cannot be used: not a database, corrupt, too new, locked too long, I/O."""


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    path: str  # relative to the root, "/"-separated, no leading slash: "a/b.txt"
    size: int
    sha256: str  # lower-case hex
    mtime_ns: int
    etag: str  # as sent on the wire, with quotes
    deleted: bool
    updated_ns: int  # time.time_ns() of the last change
    # A local file's inode and ctime when it was written (None for store objects
    # and for entries recorded before ferryman kept them).
    ino: int | None = None
    ctime_ns: int | None = None


def _entry(row: tuple[Any, ...]) -> CatalogEntry:
    path, size, sha256, mtime_ns, etag, deleted, updated_ns, ino, ctime_ns = row
    return CatalogEntry(
        path, size, sha256, mtime_ns, etag, bool(deleted), updated_ns, ino, ctime_ns
    )


@dataclass(frozen=True, slots=True)
class Intent:
    """A write in progress: recorded before the store changes, cleared with its outcome.

    `ident` names the version the write makes or removes, as the store shows
    it (a local file's "inode", a store object's ETag), so that whoever
    settles a left-over intent can tell whether the change happened.
    """

    path: str
    op: str  # "put" or "delete"
    ident: str
    size: int | None = None  # put: the bytes written
    sha256: str | None = None  # put: lower-case hex
    staged: str | None = None  # put to a local file: the temporary's name beside it
    pid: int = 0  # the process that wrote it
    at_ns: int = 0


def _translate(path: str, exc: sqlite3.Error) -> CatalogError:
    code = getattr(exc, "sqlite_errorcode", -1) & 0xFF  # primary code, without the extension
    if code == sqlite3.SQLITE_NOTADB:
        return CatalogError(f"catalog {path} is not a SQLite database")
    if code == sqlite3.SQLITE_CORRUPT:
        return CatalogError(f"catalog {path} is corrupt: {exc}")
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return CatalogError(f"catalog {path} is locked (waited up to {BUSY_TIMEOUT_MS} ms): {exc}")
    if code == sqlite3.SQLITE_CANTOPEN:
        return CatalogError(f"cannot open catalog {path}: {exc}")
    return CatalogError(f"catalog {path}: {exc}")


_WRITE = "BEGIN IMMEDIATE"  # take the write lock up front: no deadlock-prone lock upgrade
_READ = "BEGIN DEFERRED"  # one snapshot for several reads
_SINGLE = ""  # one statement, its own implicit transaction


@contextmanager
def _transaction(conn: sqlite3.Connection, path: str, begin: str) -> Iterator[sqlite3.Connection]:
    """One transaction, begun with `begin` (_WRITE, _READ or _SINGLE).

    Commits when the block ends, rolls back when it raises; sqlite3 errors
    leave as CatalogError.
    """
    try:
        if begin:
            conn.execute(begin)
        try:
            yield conn
            if begin:
                conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        raise _translate(path, exc) from exc


def _read_version(conn: sqlite3.Connection, path: str) -> int:
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'")
    if has_meta.fetchone() is None:
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise CatalogError(f"{path} is a SQLite database but not a ferryman catalog (no meta)")
        return 0  # a new, empty file
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None or not isinstance(row[0], int):
        raise CatalogError(f"catalog {path} has no valid schema_version in its meta table")
    version: int = row[0]
    if version > LATEST:
        raise CatalogError(
            f"catalog {path} has schema version {version}, newer than the {LATEST} this ferryman"
            " knows; refusing to open it (run a newer ferryman, or move the file away)"
        )
    return version


def _migrate(conn: sqlite3.Connection, path: str) -> int:
    """Bring the database to LATEST, one migration per transaction; return the version."""
    with _transaction(conn, path, _READ):
        version = _read_version(conn, path)
    while version < LATEST:
        with _transaction(conn, path, _WRITE):
            # Read again under the write lock: another worker may have migrated meanwhile.
            version = _read_version(conn, path)
            if version < LATEST:
                for statement in statements(MIGRATIONS[version]):
                    conn.execute(statement)
                version += 1
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
    return version


def _connect(path: str, *, query_only: bool) -> sqlite3.Connection:
    """A connection in WAL mode, durable at each commit, waiting BUSY_TIMEOUT_MS for locks."""
    try:
        # timeout= sets busy_timeout; isolation_level=None: we say BEGIN and COMMIT
        # ourselves; check_same_thread=False: a lock of Catalog guards it instead.
        conn = sqlite3.connect(
            path, BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise _translate(path, exc) from exc
    try:
        with _transaction(conn, path, _SINGLE):
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous = FULL")  # a commit survives power loss
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA query_only = ON" if query_only else "PRAGMA query_only = OFF")
        if mode != "wal":
            raise CatalogError(f"catalog {path} cannot use WAL (journal mode {mode!r})")
    except BaseException:
        conn.close()
        raise
    return conn


# -- the file itself -------------------------------------------------------------
#
# SQLite takes a zero-length file for a new, empty database and would quietly
# create the tables in it: a catalog emptied by a crash or a full disk would
# then start over, and every record of what was written would be gone. So a
# file that exists must be a readable, non-empty regular file; only a missing
# one is created, and whole: initialised under a temporary name and linked
# into place, so no process ever sees a catalog file that is still empty.


def _check_file(path: str) -> bool:
    """True if the catalog file exists and may be handed to SQLite; False if it is missing.

    CatalogError for one that can never be a catalog: not a regular file,
    zero bytes long, or unreadable.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CatalogError(f"catalog {path} is not a regular file")
        if st.st_size == 0:
            raise CatalogError(
                f"catalog {path} is empty (0 bytes): ferryman never leaves a catalog empty,"
                " so it was truncated and its records are lost"
            )
        os.pread(fd, 100, 0)  # SQLite's header: an I/O error shows here, not mid-request
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return True


def _create(path: str) -> None:
    """A new catalog at `path`, at the latest schema, made under another name and then
    linked in (which fails if `path` exists: another process made it first, and that
    one is used)."""
    directory, name = os.path.split(path)
    draft = os.path.join(directory, f".{name}.new-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        try:  # made here, not by SQLite, so that the error says why it cannot be
            os.close(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        except OSError as exc:
            raise CatalogError(f"cannot open catalog {path}: {exc.strerror}") from None
        conn = _connect(draft, query_only=False)
        try:
            _migrate(conn, draft)
        finally:
            conn.close()  # the last connection out checkpoints and removes the WAL
        try:
            os.link(draft, path)
        except FileExistsError:
            return
        except OSError as exc:
            raise CatalogError(f"cannot open catalog {path}: {exc.strerror}") from None
        _sync_directory(directory or ".")
    finally:
        for leftover in (draft, draft + "-wal", draft + "-shm", draft + "-journal"):
            with suppress(FileNotFoundError):
                os.unlink(leftover)


def _sync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # the name is there; only its durability across a power cut is unsure
    finally:
        os.close(fd)


class Catalog:
    """The catalog in the SQLite file at `path` (its directory must exist); created or migrated.

    Safe to share between threads, with one connection for writes and one
    for reads, each behind its own lock. Not one connection in all: a read
    (the GET path asks for a file's digest) would then queue behind a write
    that is waiting up to BUSY_TIMEOUT_MS for another worker's write lock.
    Not one per thread (threading.local): SQLite lets one writer at a time
    into the file anyway, and connections left in executor threads cannot
    be closed by `close()` (sqlite3 allows that only from their own thread
    unless check_same_thread=False, and then a lock is needed anyway).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._closed = False
        if not _check_file(self._path):
            _create(self._path)
        self._writer = _connect(self._path, query_only=False)
        try:
            _migrate(self._writer, self._path)
            self._reader = _connect(self._path, query_only=True)
        except BaseException:
            self._writer.close()
            raise

    @contextmanager
    def _use(self, begin: str) -> Iterator[sqlite3.Connection]:
        """The connection for `begin`, in one transaction, under its lock."""
        writing = begin == _WRITE
        lock = self._write_lock if writing else self._read_lock
        conn = self._writer if writing else self._reader
        with lock:
            if self._closed:
                raise CatalogError(f"catalog {self._path} is closed")
            with _transaction(conn, self._path, begin):
                yield conn

    @property
    def schema_version(self) -> int:
        with self._use(_READ) as conn:
            return _read_version(conn, self._path)

    def record(
        self,
        path: str,
        *,
        size: int,
        sha256: str,
        mtime_ns: int,
        etag: str,
        ino: int | None = None,
        ctime_ns: int | None = None,
    ) -> CatalogEntry:
        """Record a verified write of `path` (live again if it was deleted), and log it.

        Settles the path's intent in the same transaction.
        """
        check_path(path)
        check_fields(size=size, sha256=sha256, mtime_ns=mtime_ns, etag=etag)
        identity = (ino, ctime_ns)
        with self._use(_WRITE) as conn:
            now = time.time_ns()  # under the write lock: commit order and time order agree
            conn.execute(_UPSERT, (path, size, sha256, mtime_ns, etag, now, *identity))
            conn.execute(_LOG, (path, size, sha256, mtime_ns, etag, 0, now, *identity))
            conn.execute(_SETTLED, (path,))
        return CatalogEntry(path, size, sha256, mtime_ns, etag, False, now, ino, ctime_ns)

    def mark_deleted(self, path: str) -> CatalogEntry | None:
        """Mark `path` deleted, keeping its last version; None if it was never catalogued.

        Deleting what is already deleted changes nothing (no new history row).
        Settles the path's intent in the same transaction.
        """
        check_path(path)
        with self._use(_WRITE) as conn:
            conn.execute(_SETTLED, (path,))
            row = conn.execute(_GET, (path,)).fetchone()
            if row is None:
                return None
            entry = _entry(row)
            if entry.deleted:
                return entry
            now = time.time_ns()
            conn.execute(
                "UPDATE objects SET deleted = 1, updated_ns = ? WHERE path = ?", (now, path)
            )
            conn.execute(_LOG, (path, entry.size, entry.sha256, entry.mtime_ns, entry.etag, 1,
                                now, entry.ino, entry.ctime_ns))  # fmt: skip
        return replace(entry, deleted=True, updated_ns=now)

    # -- intents of writes in progress ----------------------------------------------

    def begin(self, intent: Intent) -> None:
        """Record `intent` before the change it announces (replacing the path's last one)."""
        check_path(intent.path)
        if intent.op not in ("put", "delete"):
            raise ValueError(f"intent op {intent.op!r} is not 'put' or 'delete'")
        with self._use(_WRITE) as conn:
            conn.execute(_INTENT, (intent.path, intent.op, intent.size, intent.sha256,
                                   intent.ident, intent.staged, intent.pid or os.getpid(),
                                   time.time_ns()))  # fmt: skip

    def drop_intent(self, path: str) -> None:
        """Forget the path's intent: the change did not happen (or was undone)."""
        check_path(path)
        with self._use(_WRITE) as conn:
            conn.execute(_SETTLED, (path,))

    def intents(self) -> list[Intent]:
        """Every intent not settled yet, by path."""
        with self._use(_SINGLE) as conn:
            rows = conn.execute(_INTENTS).fetchall()
        return [Intent(path, op, ident, size, sha, staged, pid, at)
                for path, op, size, sha, ident, staged, pid, at in rows]  # fmt: skip

    def get(self, path: str) -> CatalogEntry | None:
        """The current state of `path`, deleted or not; None if it was never catalogued."""
        check_path(path)
        with self._use(_SINGLE) as conn:
            row = conn.execute(_GET, (path,)).fetchone()
        return None if row is None else _entry(row)

    def history(self, path: str) -> list[CatalogEntry]:
        """Every version and deletion of `path`, oldest first (`updated_ns` is when it happened)."""
        check_path(path)
        with self._use(_SINGLE) as conn:
            rows = conn.execute(_HISTORY, (path,)).fetchall()
        return [_entry(row) for row in rows]

    def entries(self, *, include_deleted: bool = False) -> Iterator[CatalogEntry]:
        """Every entry, ordered by path (code point order), fetched PAGE_SIZE rows at a time.

        No transaction stays open between pages, so this is a walk, not a
        snapshot: each path is yielded at most once, and one present for the
        whole walk exactly once, in the state of the page that read it.
        """
        query = _PAGE_ALL if include_deleted else _PAGE_LIVE
        after = ""  # every valid path sorts after ""
        while True:
            with self._use(_SINGLE) as conn:
                rows = conn.execute(query, (after, PAGE_SIZE)).fetchall()
            yield from map(_entry, rows)
            if len(rows) < PAGE_SIZE:
                return
            after = rows[-1][0]

    def count(self) -> int:
        """The number of live (not deleted) entries."""
        with self._use(_SINGLE) as conn:
            row = conn.execute("SELECT count(*) FROM objects WHERE deleted = 0").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close both connections (idempotent); any later call raises CatalogError."""
        with self._write_lock, self._read_lock:
            if self._closed:
                return
            self._closed = True
            try:
                try:
                    self._reader.close()
                finally:
                    self._writer.close()  # the last connection out checkpoints the WAL
            except sqlite3.Error as exc:
                raise _translate(self._path, exc) from exc

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
