"""What the rest of ferryman sees of the catalog: one interface, whatever the backend.

`Catalog` is the interface; `open.py` gives one for a `--catalog` URL:
SQLite (a file in the state directory, the default) or PostgreSQL (one
database several servers share). Both are `db.SqlCatalog` over a `Database`
(sqlitebackend.py, postgres.py): the queries are the same text, and a
backend only opens transactions, reads the schema version and says how
its errors read.

Errors: `CatalogError` when the catalog cannot answer now or at all;
`CatalogUnavailable`, one of them, when its server cannot be reached (a
writer answers 503 `catalog_unavailable` and tries again later, without a
restart).

Locks: `Catalog.key_lock` holds one key's write lock across every server on
the catalog (PostgreSQL: an advisory lock; SQLite, which one server owns:
nothing to do), `KeyBusy` when another holds it past the wait.
`Catalog.lease` holds a named lease (one audit or repair per store; the
owner of multipart uploads, multipart.py) across every process on the
catalog, SQLite's included, or says at once that another holds it
(`KeyBusy`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from ferryman.errors import FerrymanError

if TYPE_CHECKING:
    from ferryman.catalog.copies import CopyEvent
    from ferryman.catalog.db import CatalogEntry, Intent
    from ferryman.catalog.multipart import MultipartUpload

# The kinds of transaction a backend opens.
WRITE = "write"  # changes: SQLite takes the file's write lock up front (BEGIN IMMEDIATE)
READ = "read"  # several reads from one snapshot
SINGLE = "single"  # one statement, its own implicit transaction
MIGRATE = "migrate"  # a migration step: one at a time across every process and server


class CatalogError(FerrymanError):
    """The catalog cannot be used: not a database, corrupt, too new, locked too long, I/O."""


class CatalogUnavailable(CatalogError):
    """The catalog's server cannot be reached now; calls fail at once until it answers again."""


class KeyBusy(FerrymanError):
    """Another server on the catalog holds the key's write lock (not a failure of the catalog)."""


class Cursor(Protocol):
    """What a statement gives back: sqlite3's and psycopg's cursors both are one."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Transaction(Protocol):
    """One open transaction: statements in the shared dialect (`?` placeholders)."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> object: ...


class Database(Protocol):
    """A backend: transactions on one catalog database, and what its version is."""

    dialect: str  # "sqlite" or "postgresql"
    location: str  # for messages: the file, or the URL without its password

    def transaction(self, kind: str) -> AbstractContextManager[Transaction]:
        """One transaction of `kind` (WRITE, READ, SINGLE); CatalogError when it fails."""
        ...

    def read_version(self, tx: Transaction) -> int: ...

    def announce(self, tx: Transaction, path: str, stores: Sequence[str]) -> None:
        """Tell the other servers, when `tx` commits, that `path` changed in `stores`
        (PostgreSQL: NOTIFY, decisions/0036; SQLite has no other server to tell)."""
        ...

    def ready(self) -> None:
        """CatalogUnavailable at once, without I/O, while the server is known to be down."""
        ...

    def key_lock(self, number: int, wait: float) -> AbstractAsyncContextManager[None]:
        """Hold the write lock `number` (a signed 64-bit hash of a store and a key) across
        every server on this database; KeyBusy after `wait` seconds. Never blocks the loop."""
        ...

    def lease(self, number: int) -> AbstractContextManager[None]:
        """Hold the lease `number` for the block, across every process using this database
        (and every server, on PostgreSQL); KeyBusy at once if another holds it. A process
        that dies lets go of its leases."""
        ...

    def close(self) -> None: ...


class Catalog(Protocol):
    """Every verified write, deletion, intent and used single-use URL (see db.py)."""

    @property
    def location(self) -> str: ...

    @property
    def schema_version(self) -> int: ...

    def ready(self) -> None: ...

    def key_lock(
        self, scope: str, key: str, *, wait: float
    ) -> AbstractAsyncContextManager[None]: ...

    def lease(self, name: str) -> AbstractContextManager[None]: ...

    def use(self, kind: str) -> AbstractContextManager[Transaction]: ...

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
    ) -> CatalogEntry: ...

    def mark_deleted(
        self, path: str, *, copies: Iterable[CopyEvent] = ()
    ) -> CatalogEntry | None: ...

    def begin(self, intent: Intent, *, once: tuple[str, int] | None = None) -> None: ...

    def drop_intent(self, path: str, *, release: str | None = None) -> None: ...

    def url_used(self, digest: str) -> bool: ...

    def intents(self) -> list[Intent]: ...

    def note_upload(self, upload: MultipartUpload) -> None: ...

    def drop_upload(self, store: str, upload_id: str) -> bool: ...

    def uploads(self, store: str | None = None) -> list[MultipartUpload]: ...

    def get(self, path: str) -> CatalogEntry | None: ...

    def history(self, path: str) -> list[CatalogEntry]: ...

    def entries(self, *, include_deleted: bool = False) -> Iterator[CatalogEntry]: ...

    def count(self) -> int: ...

    def close(self) -> None: ...

    def __enter__(self) -> Catalog: ...

    def __exit__(self, *exc_info: object) -> None: ...
