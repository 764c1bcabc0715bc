"""The catalog's SQLite file: opened, checked, created whole, migrated; one transaction.

Every sqlite3 error becomes CatalogError here, with the original as
`__cause__`. The backend over it is sqlitebackend.py, the API over the
tables db.py.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from ferryman.catalog.api import MIGRATE, READ, SINGLE, WRITE, CatalogError, Transaction
from ferryman.catalog.migrations import check_version, run_migrations
from ferryman.catalog.schema import MIGRATIONS, statements

__all__ = ["MIGRATE", "READ", "SINGLE", "WRITE", "CatalogError", "connect", "migrate"]

BUSY_TIMEOUT_MS = 5000


def translate(path: str, exc: sqlite3.Error) -> CatalogError:
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


BEGIN = {
    WRITE: "BEGIN IMMEDIATE",  # take the write lock up front: no deadlock-prone lock upgrade
    MIGRATE: "BEGIN IMMEDIATE",  # the write lock is what keeps migrations one at a time
    READ: "BEGIN DEFERRED",  # one snapshot for several reads
    SINGLE: "",  # one statement, its own implicit transaction
}


@contextmanager
def transaction(conn: sqlite3.Connection, path: str, kind: str) -> Iterator[sqlite3.Connection]:
    """One transaction of `kind` (api.WRITE, MIGRATE, READ or SINGLE).

    Commits when the block ends, rolls back when it raises; sqlite3 errors
    leave as CatalogError.
    """
    begin = BEGIN[kind]
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
        raise translate(path, exc) from exc


def read_version(conn: Transaction, path: str) -> int:
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'")
    if has_meta.fetchone() is None:
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise CatalogError(f"{path} is a SQLite database but not a ferryman catalog (no meta)")
        return 0  # a new, empty file
    return check_version(conn, f"catalog {path}")


class Migrating:
    """One connection, as the shared migration runner sees it."""

    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn, self.location = conn, path

    def transaction(self, kind: str) -> contextlib.AbstractContextManager[Transaction]:
        return transaction(self.conn, self.location, kind)

    def read_version(self, tx: Transaction) -> int:
        return read_version(tx, self.location)

    def steps(self, version: int) -> list[str]:
        return list(statements(MIGRATIONS[version]))


def migrate(conn: sqlite3.Connection, path: str) -> int:
    """Bring the database to LATEST, one migration per transaction; return the version."""
    return run_migrations(Migrating(conn, path))


def connect(path: str, *, query_only: bool) -> sqlite3.Connection:
    """A connection in WAL mode, durable at each commit, waiting BUSY_TIMEOUT_MS for locks."""
    try:
        # timeout= sets busy_timeout; isolation_level=None: we say BEGIN and COMMIT
        # ourselves; check_same_thread=False: a lock of Catalog guards it instead.
        conn = sqlite3.connect(
            path, BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise translate(path, exc) from exc
    try:
        with transaction(conn, path, SINGLE):
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


def check_file(path: str) -> bool:
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


def create(path: str) -> None:
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
        conn = connect(draft, query_only=False)
        try:
            migrate(conn, draft)
        finally:
            conn.close()  # the last connection out checkpoints and removes the WAL
        try:
            os.link(draft, path)
        except FileExistsError:
            return
        except OSError as exc:
            raise CatalogError(f"cannot open catalog {path}: {exc.strerror}") from None
        sync_directory(directory or ".")
    finally:
        for leftover in (draft, draft + "-wal", draft + "-shm", draft + "-journal"):
            with suppress(FileNotFoundError):
                os.unlink(leftover)


def sync_directory(directory: str) -> None:
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
