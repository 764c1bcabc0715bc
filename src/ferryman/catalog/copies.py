"""Every copy of a key in every store, and what happened to each (schema v4).

A store is named by its canonical form: an absolute directory, or
`s3://bucket/prefix`. `copies` holds the state of one key in one store as
ferryman last saw it: its size, SHA-256, the store's own identifier of the
version (`ident`: an ETag, or a local file's "inode:mtime_ns:ctime_ns"),
whether it is there, and when it was last verified with what result ("ok" or
a finding kind). `copy_events` logs every change and verification, oldest
first, and cannot be changed (triggers refuse UPDATE and DELETE).

An `ident` that still matches what a store lists means the copy has not
changed since its last verification: an audit without --deep trusts that
verification's digest instead of reading the bytes again.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from ferryman.catalog.api import SINGLE, WRITE, Catalog, Transaction
from ferryman.catalog.schema import check_path

EVENTS = ("written", "deleted", "write_failed", "verified", "repaired")


@dataclass(frozen=True, slots=True)
class CopyEvent:
    """One thing that happened to the copy of `path` in `store`."""

    path: str
    store: str
    event: str  # one of EVENTS
    size: int | None = None
    sha256: str | None = None
    ident: str | None = None
    result: str | None = None  # "ok" or a finding kind (verified); the reason (write_failed)
    detail: str | None = None  # verified: "read" (hashed now) or "listing"; else free text
    at_ns: int = 0  # set when recorded


# What an audit needs to know of a copy it lists: the row Copies.known reads, as the
# database gives it (path, size, sha256, ident, state, verified_ns, result), read by
# the indices below. A tuple, not an object made per copy: making one was a third of
# the time of loading a store's copies.
KnownCopy = tuple[str, int | None, str | None, str | None, str, int | None, str | None]
KNOWN_SIZE: Final = 1
KNOWN_SHA256: Final = 2
KNOWN_IDENT: Final = 3
KNOWN_STATE: Final = 4
KNOWN_VERIFIED_NS: Final = 5
KNOWN_RESULT: Final = 6


@dataclass(frozen=True, slots=True)
class CopyState:
    path: str
    store: str
    size: int | None
    sha256: str | None
    ident: str | None
    state: str  # "present", "deleted" or "failed"
    verified_ns: int | None
    result: str | None
    updated_ns: int


_STATE = {"written": "present", "repaired": "present", "deleted": "deleted",
          "write_failed": "failed"}  # fmt: skip
_LOG = (
    "INSERT INTO copy_events (path, store, event, size, sha256, ident, result, detail, at_ns)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# A change (written, repaired, deleted, failed) replaces what was known of the copy.
_CHANGED = (
    "INSERT INTO copies (path, store, size, sha256, ident, state, verified_ns, result, updated_ns)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path, store) DO UPDATE SET"
    " size = excluded.size, sha256 = excluded.sha256, ident = excluded.ident,"
    " state = excluded.state, verified_ns = excluded.verified_ns, result = excluded.result,"
    " updated_ns = excluded.updated_ns"
)
# Equal, NULL included: SQLite's `IS` and PostgreSQL's `IS NOT DISTINCT FROM` in the words
# both know.
_SAME_IDENT = "(copies.ident = excluded.ident OR (copies.ident IS NULL AND excluded.ident IS NULL))"
# A verification: what the audit saw of the copy now. Its digest and the time it
# was last hashed carry over only while the copy is the same version (its ident
# unchanged); a copy that changed is unhashed until a deep audit reads it. "The same
# ident, NULL included" is spelled out: SQLite's `IS` is PostgreSQL's `IS NOT DISTINCT FROM`.
_VERIFIED = (
    "INSERT INTO copies (path, store, size, sha256, ident, state, verified_ns, result, updated_ns)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path, store) DO UPDATE SET"
    " size = excluded.size,"
    " sha256 = CASE WHEN excluded.sha256 IS NOT NULL THEN excluded.sha256"
    " WHEN copies.ident = excluded.ident"
    " OR (copies.ident IS NULL AND excluded.ident IS NULL) THEN copies.sha256 END,"
    " verified_ns = CASE WHEN excluded.verified_ns IS NOT NULL THEN excluded.verified_ns"
    " WHEN copies.ident = excluded.ident"
    " OR (copies.ident IS NULL AND excluded.ident IS NULL) THEN copies.verified_ns END,"
    " ident = excluded.ident, state = excluded.state, result = excluded.result,"
    " updated_ns = excluded.updated_ns"
)
_OF_PATH = (
    "SELECT path, store, size, sha256, ident, state, verified_ns, result, updated_ns"
    " FROM copies WHERE path = ? ORDER BY store"
)
_EVENTS_OF = (
    "SELECT path, store, event, size, sha256, ident, result, detail, at_ns"
    " FROM copy_events WHERE path = ? ORDER BY id"
)
_KNOWN = "SELECT path, size, sha256, ident, state, verified_ns, result FROM copies WHERE store = ?"


def note_events(conn: Transaction, events: Iterable[CopyEvent]) -> None:
    """Log `events` and bring each copy's state up to date, inside the caller's write
    transaction (Catalog.record uses it, so a write and its copy land together).

    An audit notes thousands at a time: the rows go in with executemany, a run of
    events of one sort (verified, or a change) per statement, in their order.
    """
    now = time.time_ns()
    for verified, run in itertools.groupby(events, key=lambda e: e.event == "verified"):
        batch = list(run)
        for event in batch:
            check_path(event.path)
            if event.event not in EVENTS:
                raise ValueError(f"copy event {event.event!r} is not one of {EVENTS}")
        conn.executemany(_LOG, [(e.path, e.store, e.event, e.size, e.sha256, e.ident,
                                 e.result, e.detail, now) for e in batch])  # fmt: skip
        rows = _verified_rows(batch, now) if verified else _changed_rows(batch, now)
        conn.executemany(_VERIFIED if verified else _CHANGED, rows)


def _changed_rows(events: list[CopyEvent], now: int) -> list[tuple[Any, ...]]:
    """Written, repaired (both verified as they landed), deleted, or a write that failed."""
    rows = []
    for event in events:
        present = _STATE[event.event] == "present"
        verified, result = (now, "ok") if present else (None, None)
        rows.append((event.path, event.store, event.size, event.sha256, event.ident,
                     _STATE[event.event], verified, result, now))  # fmt: skip
    return rows


def _verified_rows(events: list[CopyEvent], now: int) -> list[tuple[Any, ...]]:
    """An audit looked at the copy. `detail` says how: "read" (its bytes were hashed
    now: the copy counts as verified now) or "listing" (its size and, when its ident
    still matched, the digest of its last reading)."""
    return [
        (e.path, e.store, e.size, e.sha256, e.ident,
         "deleted" if e.result == "missing" else "present",
         now if e.detail == "read" else None, e.result, now)
        for e in events
    ]  # fmt: skip


def _state(row: tuple[Any, ...]) -> CopyState:
    return CopyState(*row)


def _event(row: tuple[Any, ...]) -> CopyEvent:
    return CopyEvent(*row)


class Copies:
    """The copies of a catalog, read and noted in transactions of their own."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def note(self, events: Iterable[CopyEvent]) -> None:
        """Record `events` in one transaction."""
        batch = list(events)
        with self.catalog.use(WRITE) as conn:
            note_events(conn, batch)

    def of_path(self, path: str) -> list[CopyState]:
        """The copies of `path`, by store."""
        check_path(path)
        with self.catalog.use(SINGLE) as conn:
            rows = conn.execute(_OF_PATH, (path,)).fetchall()
        return [_state(row) for row in rows]

    def events(self, path: str) -> list[CopyEvent]:
        """Every event of every copy of `path`, oldest first."""
        check_path(path)
        with self.catalog.use(SINGLE) as conn:
            rows = conn.execute(_EVENTS_OF, (path,)).fetchall()
        return [_event(row) for row in rows]

    def known(self, store: str) -> dict[str, KnownCopy]:
        """What the catalog knows of every copy in `store`, by path: an audit looks up each
        key it lists (one query, only the columns it needs: a store of a million copies
        is read in seconds and held in some hundreds of MiB)."""
        with self.catalog.use(SINGLE) as conn:
            rows = conn.execute(_KNOWN, (store,)).fetchall()
        return {row[0]: row for row in rows}
