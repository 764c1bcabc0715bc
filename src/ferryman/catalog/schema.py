"""The catalog's schema: an ordered list of migrations, and what a valid row holds.

`MIGRATIONS[i]` takes a database from schema version `i` to `i + 1`; the
version of a database is the number of migrations applied to it, kept in
`meta.schema_version` (0 when there is no `meta` table: a new file). The
runner in `db.py` applies each one in its own write transaction and bumps the
version in that same transaction, so a crash leaves a database at one
version or the next, never between.

A released migration is never edited: databases in the field were made by
the text as it was. Change the schema by appending a migration (a test
pins the text of version 1; pin each release's migration the same way).

`check_path` and `check_fields` are the Python side of the CHECK
constraints: they refuse bad values with ValueError (TypeError for a wrong
type) before the database is touched, with a message that names the value.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator

# v1: current state per path, and an append-only log of every change.
# Rows of `objects` are never removed (DELETE sets `deleted`), which is what
# lets every `history` row reference one.
_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
);
INSERT INTO meta (key, value) VALUES ('schema_version', 0);

CREATE TABLE objects (
    path       TEXT PRIMARY KEY NOT NULL,
    size       INTEGER NOT NULL CHECK (size >= 0),
    sha256     TEXT NOT NULL CHECK (length(sha256) = 64),
    mtime_ns   INTEGER NOT NULL,
    etag       TEXT NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    updated_ns INTEGER NOT NULL
);

CREATE TABLE history (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    path     TEXT NOT NULL REFERENCES objects (path),
    size     INTEGER NOT NULL,
    sha256   TEXT NOT NULL,
    mtime_ns INTEGER NOT NULL,
    etag     TEXT NOT NULL,
    deleted  INTEGER NOT NULL CHECK (deleted IN (0, 1)),
    at_ns    INTEGER NOT NULL
);
CREATE INDEX history_by_path ON history (path, id);
"""

# v2: the history is append-only in the database itself, not only by habit
# of the code that writes it, and objects rows cannot be dropped (a DELETE
# is a flag, the audit relies on the trail).
_V2 = """
CREATE TRIGGER history_no_update BEFORE UPDATE ON history
BEGIN
    SELECT RAISE(ABORT, 'catalog history is append-only');
END;

CREATE TRIGGER history_no_delete BEFORE DELETE ON history
BEGIN
    SELECT RAISE(ABORT, 'catalog history is append-only');
END;

CREATE TRIGGER objects_no_delete BEFORE DELETE ON objects
BEGIN
    SELECT RAISE(ABORT, 'catalog objects are marked deleted, never removed');
END;
"""

# v3: what identifies a local file's version beyond size and mtime (inode and
# ctime: an edit that restores the mtime still changes the ctime), the
# intents of writes in progress, and the single-use signed URLs used. A write
# records its intent before it changes the store and clears it in the
# transaction that records the outcome, so a crash between the two leaves an
# intent that the next start settles by looking at the store (app/writes.py).
_V3 = """
ALTER TABLE objects ADD COLUMN ino INTEGER;
ALTER TABLE objects ADD COLUMN ctime_ns INTEGER;
ALTER TABLE history ADD COLUMN ino INTEGER;
ALTER TABLE history ADD COLUMN ctime_ns INTEGER;

CREATE TABLE intents (
    path   TEXT PRIMARY KEY NOT NULL,
    op     TEXT NOT NULL CHECK (op IN ('put', 'delete')),
    size   INTEGER CHECK (size IS NULL OR size >= 0),
    sha256 TEXT CHECK (sha256 IS NULL OR length(sha256) = 64),
    ident  TEXT NOT NULL,
    staged TEXT,
    pid    INTEGER NOT NULL,
    at_ns  INTEGER NOT NULL
);

-- Single-use signed URLs that were used, by the SHA-256 of their signature,
-- kept until they expire (an expired URL is refused anyway).
CREATE TABLE used_urls (
    signature  TEXT PRIMARY KEY NOT NULL CHECK (length(signature) = 64),
    path       TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used_ns    INTEGER NOT NULL
);
CREATE INDEX used_urls_by_expiry ON used_urls (expires_at);
"""

# v4: every copy of a key in every store (the source and its replicas), with an
# append-only log of what happened to each copy (written, deleted, a write that
# failed, verified by an audit, repaired); and audit and repair runs, with what
# each has checked so far, so a run killed midway continues where it stopped.
_V4 = """
CREATE TABLE copies (
    path        TEXT NOT NULL,
    store       TEXT NOT NULL,
    size        INTEGER CHECK (size IS NULL OR size >= 0),
    sha256      TEXT CHECK (sha256 IS NULL OR length(sha256) = 64),
    ident       TEXT,
    state       TEXT NOT NULL CHECK (state IN ('present', 'deleted', 'failed')),
    verified_ns INTEGER,
    result      TEXT,
    updated_ns  INTEGER NOT NULL,
    PRIMARY KEY (path, store)
);

CREATE TABLE copy_events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    path   TEXT NOT NULL,
    store  TEXT NOT NULL,
    event  TEXT NOT NULL
           CHECK (event IN ('written', 'deleted', 'write_failed', 'verified', 'repaired')),
    size   INTEGER,
    sha256 TEXT,
    ident  TEXT,
    result TEXT,
    detail TEXT,
    at_ns  INTEGER NOT NULL
);
CREATE INDEX copy_events_by_path ON copy_events (path, id);

CREATE TRIGGER copy_events_no_update BEFORE UPDATE ON copy_events
BEGIN
    SELECT RAISE(ABORT, 'catalog copy events are append-only');
END;

CREATE TRIGGER copy_events_no_delete BEFORE DELETE ON copy_events
BEGIN
    SELECT RAISE(ABORT, 'catalog copy events are append-only');
END;

CREATE TABLE runs (
    id          TEXT PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('audit', 'repair')),
    options     TEXT NOT NULL,
    started_ns  INTEGER NOT NULL,
    finished_ns INTEGER
);

CREATE TABLE run_checks (
    run           TEXT NOT NULL REFERENCES runs (id),
    store         TEXT NOT NULL,
    path          TEXT NOT NULL,
    result          TEXT NOT NULL,
    expected_size   INTEGER,
    expected_sha256 TEXT,
    actual_size     INTEGER,
    actual_sha256   TEXT,
    detail          TEXT,
    PRIMARY KEY (run, store, path)
);
"""

# v5: a run keeps, per store, how far it got (the last key it checked, in
# code-point order) and how many copies were fine, and a row only for each
# finding: what a run records grows with what it finds, not with the store.
# A run that stopped resumes after its last key.
_V5 = """
CREATE TABLE run_stores (
    run     TEXT NOT NULL REFERENCES runs (id),
    store   TEXT NOT NULL,
    through TEXT NOT NULL,
    ok      INTEGER NOT NULL CHECK (ok >= 0),
    PRIMARY KEY (run, store)
);

CREATE TABLE run_findings (
    run             TEXT NOT NULL REFERENCES runs (id),
    store           TEXT NOT NULL,
    path            TEXT NOT NULL,
    result          TEXT NOT NULL CHECK (result != 'ok'),
    expected_size   INTEGER,
    expected_sha256 TEXT,
    actual_size     INTEGER,
    actual_sha256   TEXT,
    detail          TEXT,
    PRIMARY KEY (run, store, path)
);

INSERT INTO run_stores (run, store, through, ok)
    SELECT run, store, MAX(path), SUM(result = 'ok') FROM run_checks GROUP BY run, store;
INSERT INTO run_findings
    SELECT run, store, path, result, expected_size, expected_sha256, actual_size,
           actual_sha256, detail
    FROM run_checks WHERE result != 'ok';
DROP TABLE run_checks;
"""

# v6: the server that recorded each intent (serverid.py), so that a server
# starting settles its own interrupted writes and leaves another server's
# write in progress alone (app/writes.py). Intents from before have none.
_V6 = """
ALTER TABLE intents ADD COLUMN server TEXT;
"""

# v7: the multipart uploads in progress on the stores ferryman writes to, each
# recorded right after S3 gave its upload id and dropped once it is completed
# or aborted. `owner` names the process's lease (catalog/multipart.py): while
# it can be taken, the process is gone and its upload is aborted by another.
_V7 = """
CREATE TABLE multipart_uploads (
    store      TEXT NOT NULL,
    key        TEXT NOT NULL,
    upload_id  TEXT NOT NULL,
    owner      TEXT NOT NULL,
    server     TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    started_ns INTEGER NOT NULL,
    PRIMARY KEY (store, upload_id)
);
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4, _V5, _V6, _V7)
LATEST = len(MIGRATIONS)

_SHA256 = re.compile(r"[0-9a-f]{64}")
_ETAG = re.compile(r'(?:W/)?"[\x21\x23-\x7e\x80-\xff]*"')  # RFC 9110 entity-tag
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1  # what an SQLite INTEGER holds


def statements(script: str) -> Iterator[str]:
    """Split a script into complete statements (semicolons inside triggers are kept).

    `Connection.executescript` would do this too, but it COMMITs any open
    transaction first, which would split a migration from its version bump.
    """
    start = 0
    for end, char in enumerate(script):
        if char == ";" and sqlite3.complete_statement(script[start : end + 1]):
            statement = script[start : end + 1].strip()
            start = end + 1
            if statement != ";":
                yield statement
    if script[start:].strip():
        raise ValueError(f"incomplete SQL statement at the end of a script: {script[start:]!r}")


def check_path(path: str) -> None:
    """A catalog path is a normalised relative URL path: "a/b.txt", never "/a", "a//b" or "a/..".

    Empty segments are refused too: "a//b" and "a/b" name one file on disk,
    and two catalog rows for it would make the audit see a phantom.
    """
    if not isinstance(path, str):
        raise TypeError(f"catalog path must be a str, not {type(path).__name__}")
    if not path or path.startswith("/") or "\x00" in path:
        raise ValueError(f"catalog path {path!r} is empty, absolute or holds a NUL")
    # Checked once per key of every audit: substring tests rather than a split.
    # With a slash on each side, a segment "" shows as "//", "." as "/./", ".." as "/../".
    framed = f"/{path}/"
    if "//" in framed or "/./" in framed or "/../" in framed:
        raise ValueError(f"catalog path {path!r} has an empty, '.' or '..' segment")
    if path.isascii():
        return
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"catalog path {path!r} is not valid Unicode (lone surrogate)") from None


def check_fields(*, size: int, sha256: str, mtime_ns: int, etag: str) -> None:
    """The fields of one recorded version: size >= 0, lower-case hex SHA-256, quoted ETag."""
    _check_int("size", size, 0)
    _check_int("mtime_ns", mtime_ns, _INT64_MIN)
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise ValueError(f"sha256 {sha256!r} is not 64 lower-case hex digits")
    if not isinstance(etag, str) or not _ETAG.fullmatch(etag):
        raise ValueError(f'etag {etag!r} is not a quoted entity-tag ("..." or W/"...")')


def _check_int(name: str, value: int, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= _INT64_MAX:
        raise ValueError(f"{name} {value} is out of range [{low}, 2**63 - 1]")
