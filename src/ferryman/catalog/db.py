"""The catalog's API over its tables: one text of queries for every backend.

A write is recorded only once it has been verified (size and SHA-256 read
back from the store); the audit later compares this record with each store.
`objects` holds the current state per path, `history` every change, oldest
first. A DELETE marks the object deleted and keeps it. Schema and
migrations are in `schema.py`; the backends (a SQLite file, a PostgreSQL
database) in sqlitebackend.py and postgres.py; why SQLite, WAL and
synchronous=FULL is in docs/decisions/0007-catalog-in-sqlite.md, why
PostgreSQL too in docs/decisions/0033-catalog-backends.md.

Who owns what: a `SqlCatalog` owns its `Database` and closes it. Each call
is one transaction of the backend's, never held across a `yield` (entries()
reads a page per transaction) and never while calling out of this package.

Errors: bad arguments raise ValueError (TypeError for a wrong type; see
`schema.check_*`) before the database is touched; every database error
becomes `CatalogError` (`CatalogUnavailable` when its server cannot be
reached), with the original as `__cause__`.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from typing import Any, Self

from ferryman.catalog import multipart
from ferryman.catalog.api import READ, SINGLE, WRITE, CatalogError, Database, Transaction
from ferryman.catalog.changes import changed_stores
from ferryman.catalog.copies import CopyEvent, note_events
from ferryman.catalog.multipart import MultipartUpload
from ferryman.catalog.schema import check_fields, check_path
from ferryman.catalog.sqlitebackend import SqliteDatabase
from ferryman.errors import FerrymanError

PAGE_SIZE = 500  # rows per transaction in entries()
# The ETag of an entry recorded from an inventory alone (`catalog import` of a copy that was
# missing or differed): a claim about what should be stored, tied to no file's version.
CLAIM_ETAG = '"imported"'

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
    "INSERT INTO intents (path, op, size, sha256, ident, staged, pid, at_ns, server)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET op = excluded.op,"
    " size = excluded.size, sha256 = excluded.sha256, ident = excluded.ident,"
    " staged = excluded.staged, pid = excluded.pid, at_ns = excluded.at_ns,"
    " server = excluded.server"
)
_INTENTS = (
    "SELECT path, op, size, sha256, ident, staged, pid, at_ns, server FROM intents ORDER BY path"
)
_SETTLED = "DELETE FROM intents WHERE path = ?"


__all__ = ["CatalogEntry", "CatalogError", "Intent", "SqlCatalog", "SqliteCatalog", "UrlUsed"]


class UrlUsed(FerrymanError):
    """A single-use signed URL was used already (or is being used by another write)."""


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
    # The server that wrote it (serverid.py); None for intents recorded before
    # ferryman kept it, which belong to the one server that used the catalog then.
    server: str | None = None


def lock_number(scope: str, key: str) -> int:
    """The write lock of `key` in the store `scope` names, as a signed 64-bit integer (what
    PostgreSQL's advisory locks take). Two keys sharing one only wait for each other."""
    named = f"{scope}\0{key}".encode("utf-8", "surrogateescape")
    digest = hashlib.blake2b(named, digest_size=8, person=b"ferryman-write").digest()
    return int.from_bytes(digest, "big", signed=True)


def _use_url(conn: Transaction, path: str, digest: str, expires_at: int) -> None:
    """Record the use of a single-use URL (inside a write transaction); UrlUsed if it was.

    The insert itself decides (a conflict inserts nothing), so two servers on one
    database cannot both use the URL between a look and an insert.
    """
    now = time.time_ns()
    conn.execute("DELETE FROM used_urls WHERE expires_at < ?", (now // 1_000_000_000,))
    inserted = conn.execute(
        "INSERT INTO used_urls (signature, path, expires_at, used_ns) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (signature) DO NOTHING",
        (digest, path, expires_at, now),
    )
    if inserted.rowcount != 1:
        raise UrlUsed("this signed URL was used already")


class SqlCatalog:
    """The catalog in `database` (sqlitebackend.SqliteDatabase or postgres.PostgresDatabase),
    which it owns. Safe to share between threads: the backend serialises what must be."""

    def __init__(self, database: Database) -> None:
        self._db = database

    @property
    def location(self) -> str:
        """The file, or the URL without its password: for messages."""
        return self._db.location

    def key_lock(self, scope: str, key: str, *, wait: float) -> AbstractAsyncContextManager[None]:
        """Hold `key`'s write lock in the store `scope` names, across every server on this
        catalog, for the block; api.KeyBusy after `wait` seconds (0: one attempt)."""
        return self._db.key_lock(lock_number(scope, key), wait)

    def lease(self, name: str) -> AbstractContextManager[None]:
        """Hold the lease `name` for the block, or api.KeyBusy at once: one holder at a
        time across every process (and server) on this catalog."""
        return self._db.lease(lock_number("lease", name))

    def use(self, kind: str) -> AbstractContextManager[Transaction]:
        """One transaction (api.WRITE, READ or SINGLE): for the ledgers of this package
        (copies.py, runs.py), which keep the same rules (no yield, no call out of the
        package while inside)."""
        return self._db.transaction(kind)

    def ready(self) -> None:
        """CatalogUnavailable at once, without I/O, while the database is known to be down:
        a write can be refused before its body is read."""
        self._db.ready()

    @property
    def schema_version(self) -> int:
        with self._db.transaction(READ) as conn:
            return self._db.read_version(conn)

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
        copies: Iterable[CopyEvent] = (),
    ) -> CatalogEntry:
        """Record a verified write of `path` (live again if it was deleted), and log it.

        Settles the path's intent, and notes `copies` (the stores that hold it
        now), in the same transaction; the other servers learn of it when it
        commits (Database.announce).
        """
        check_path(path)
        check_fields(size=size, sha256=sha256, mtime_ns=mtime_ns, etag=etag)
        identity = (ino, ctime_ns)
        copies = list(copies)
        with self._db.transaction(WRITE) as conn:
            now = time.time_ns()  # under the write lock: commit order and time order agree
            conn.execute(_UPSERT, (path, size, sha256, mtime_ns, etag, now, *identity))
            conn.execute(_LOG, (path, size, sha256, mtime_ns, etag, 0, now, *identity))
            conn.execute(_SETTLED, (path,))
            note_events(conn, copies)
            self._db.announce(conn, path, changed_stores(copies))
        return CatalogEntry(path, size, sha256, mtime_ns, etag, False, now, ino, ctime_ns)

    def mark_deleted(self, path: str, *, copies: Iterable[CopyEvent] = ()) -> CatalogEntry | None:
        """Mark `path` deleted, keeping its last version; None if it was never catalogued.

        Deleting what is already deleted changes nothing (no new history row).
        Settles the path's intent and notes `copies` in the same transaction; the
        other servers learn of it when it commits, catalogued or not (a server may
        hold a copy of what was never recorded).
        """
        check_path(path)
        copies = list(copies)
        with self._db.transaction(WRITE) as conn:
            conn.execute(_SETTLED, (path,))
            note_events(conn, copies)
            self._db.announce(conn, path, changed_stores(copies))
            now = time.time_ns()
            # The update decides, then the row is read: on PostgreSQL the update holds the
            # row, so of two servers deleting one path at once exactly one logs it.
            marked = conn.execute(
                "UPDATE objects SET deleted = 1, updated_ns = ? WHERE path = ? AND deleted = 0",
                (now, path),
            )
            row = conn.execute(_GET, (path,)).fetchone()
            if row is None:
                return None
            entry = _entry(row)
            if marked.rowcount == 1:
                conn.execute(_LOG, (path, entry.size, entry.sha256, entry.mtime_ns, entry.etag,
                                    1, now, entry.ino, entry.ctime_ns))  # fmt: skip
        return entry

    # -- intents of writes in progress ----------------------------------------------

    def begin(self, intent: Intent, *, once: tuple[str, int] | None = None) -> None:
        """Record `intent` before the change it announces (replacing the path's last one).

        `once` is a single-use URL's (signature digest, expiry): its use is
        recorded in the same transaction, or UrlUsed if it was recorded before.
        """
        check_path(intent.path)
        if intent.op not in ("put", "delete"):
            raise ValueError(f"intent op {intent.op!r} is not 'put' or 'delete'")
        with self._db.transaction(WRITE) as conn:
            if once is not None:
                _use_url(conn, intent.path, *once)
            conn.execute(_INTENT, (intent.path, intent.op, intent.size, intent.sha256,
                                   intent.ident, intent.staged, intent.pid or os.getpid(),
                                   time.time_ns(), intent.server))  # fmt: skip

    def drop_intent(self, path: str, *, release: str | None = None) -> None:
        """Forget the path's intent: the change did not happen (or was undone).

        `release`: the digest of the single-use URL the change had used, which
        may be used again since nothing was changed.
        """
        check_path(path)
        with self._db.transaction(WRITE) as conn:
            conn.execute(_SETTLED, (path,))
            if release is not None:
                conn.execute("DELETE FROM used_urls WHERE signature = ?", (release,))

    def url_used(self, digest: str) -> bool:
        """Whether the single-use URL with this signature digest was used."""
        with self._db.transaction(SINGLE) as conn:
            row = conn.execute("SELECT 1 FROM used_urls WHERE signature = ?", (digest,))
            return row.fetchone() is not None

    def intents(self) -> list[Intent]:
        """Every intent not settled yet, by path."""
        with self._db.transaction(SINGLE) as conn:
            rows = conn.execute(_INTENTS).fetchall()
        return [Intent(path, op, ident, size, sha, staged, pid, at, server)
                for path, op, size, sha, ident, staged, pid, at, server in rows]  # fmt: skip

    # -- multipart uploads in progress (multipart.py) -------------------------------

    def note_upload(self, upload: MultipartUpload) -> None:
        """Record a multipart upload S3 has begun, before its first part is sent."""
        multipart.note(self._db, upload)

    def drop_upload(self, store: str, upload_id: str) -> bool:
        """Forget a multipart upload once completed or aborted; whether it was recorded."""
        return multipart.drop(self._db, store, upload_id)

    def uploads(self, store: str | None = None) -> list[MultipartUpload]:
        """The multipart uploads recorded (in `store` only, when given), oldest first."""
        return multipart.listed(self._db, store)

    def get(self, path: str) -> CatalogEntry | None:
        """The current state of `path`, deleted or not; None if it was never catalogued."""
        check_path(path)
        with self._db.transaction(SINGLE) as conn:
            row = conn.execute(_GET, (path,)).fetchone()
        return None if row is None else _entry(row)

    def history(self, path: str) -> list[CatalogEntry]:
        """Every version and deletion of `path`, oldest first (`updated_ns` is when it happened)."""
        check_path(path)
        with self._db.transaction(SINGLE) as conn:
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
            with self._db.transaction(SINGLE) as conn:
                rows = conn.execute(query, (after, PAGE_SIZE)).fetchall()
            yield from map(_entry, rows)
            if len(rows) < PAGE_SIZE:
                return
            after = rows[-1][0]

    def count(self) -> int:
        """The number of live (not deleted) entries."""
        with self._db.transaction(SINGLE) as conn:
            row = conn.execute("SELECT count(*) FROM objects WHERE deleted = 0").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the database (idempotent); any later call raises CatalogError."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SqliteCatalog(SqlCatalog):
    """The catalog in the SQLite file at `path` (its directory must exist); created or
    migrated."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(SqliteDatabase(path))
