"""The PostgreSQL backend: one database that several servers share (psycopg 3 and its pool).

Why PostgreSQL, psycopg 3 and the pool: docs/decisions/0033-catalog-backends.md.

The URL goes to libpq untouched (environment variables and ~/.pgpass fill
in the rest); messages show it redacted (location.py). Every connection
has the connect timeout, `statement_timeout` (set once when the pool opens
it) and a TCP user timeout, so no call waits on a silent server for longer
than those.

Transactions: WRITE and READ are one `BEGIN ... COMMIT` (READ COMMITTED; the
shared queries need no more: each change of db.py is decided by the
statement that writes it, an upsert, an insert on conflict or an update
with its condition, never by a read before it; a run's start in runs.py is
the exception, see decisions/0033); SINGLE is one statement in autocommit;
MIGRATE takes a transaction-scoped advisory lock first, so that servers
starting together run each step once. `announce` adds the change's
notifications (changes.py) to a WRITE transaction: PostgreSQL delivers them
to every listener when it commits, and drops them when it rolls back.

Who owns what: a `PostgresDatabase` owns its pool (opened in `__init__`,
closed by `close()`), its `Outage` and its write locks across servers
(advisory.py: one connection of their own, opened at the first write); a
connection is borrowed from the pool for one transaction and given back
when it ends.

Errors: psycopg's become CatalogError here, with the original as
`__cause__`: a server that cannot be reached (no connection within the
connect timeout, a connection lost, the server shutting down) is
CatalogUnavailable, and marks the catalog down until a probe reaches it.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg_pool
from psycopg import errors

from ferryman.catalog.advisory import AdvisoryLocks
from ferryman.catalog.api import (
    MIGRATE,
    SINGLE,
    CatalogError,
    CatalogUnavailable,
    Cursor,
    Transaction,
)
from ferryman.catalog.changes import CHANNEL, encode
from ferryman.catalog.dialect import POSTGRESQL
from ferryman.catalog.location import redact, scrub
from ferryman.catalog.migrations import check_version, run_migrations
from ferryman.catalog.outage import Outage, one_line

# The key of the advisory lock that makes migration steps one at a time: "ferryman" in
# ASCII, as a signed 64-bit integer. Any other use of this key in the database waits too.
MIGRATION_LOCK = int.from_bytes(b"ferryman", "big", signed=True)

# The pool reports each failed connection attempt as a warning; ferryman says it once,
# on one line, when the catalog goes down (outage.py).
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    pool_size: int = 4  # connections per process, at most
    connect_timeout: float = 5.0  # seconds: to connect, and to wait for a free connection
    statement_timeout: float = 5.0  # seconds one statement may run, lock waits included
    origin: str = ""  # the server whose changes these are, in their notifications


@functools.lru_cache(maxsize=256)
def _placeholders(sql: str) -> str:
    """The shared dialect's `?` as psycopg's `%s` (no query of the catalog holds a `%`
    or a `?` inside a string)."""
    return sql.replace("?", "%s")


class _Transaction:
    """One borrowed connection inside its transaction, speaking the shared dialect."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        if not parameters:  # a script (a migration: several statements) or a plain query
            return self._conn.execute(sql)
        return self._conn.execute(_placeholders(sql), parameters)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> object:
        batch = list(rows)
        if batch:
            with self._conn.cursor() as cursor:
                cursor.executemany(_placeholders(sql), batch)
        return None


class PostgresDatabase:
    """The catalog in the PostgreSQL database `url` names, migrated to the latest schema.

    `reach`: the database must answer now (the boot step, the commands);
    without it a server that is down leaves this catalog down, to be reached
    later (a worker started while the database is away still serves reads).
    """

    dialect = "postgresql"

    def __init__(self, url: str, settings: PostgresSettings, *, reach: bool = True) -> None:
        self.location = redact(url)
        self._url = url
        self._settings = settings
        self._closed = False
        self._kwargs: dict[str, Any] = {
            "connect_timeout": max(1, math.ceil(settings.connect_timeout)),
            "application_name": "ferryman",
            # A query sent to a host that went silent fails after this, not after TCP's minutes.
            "tcp_user_timeout": int((settings.connect_timeout + settings.statement_timeout) * 1000),
        }
        self.outage = Outage(self.location, self._probe, describe=self._text)
        self._locks = AdvisoryLocks(self._lock_connection, self._failed, self._text)
        self._pool = psycopg_pool.ConnectionPool(
            url, kwargs={**self._kwargs, "autocommit": True}, min_size=1,
            max_size=max(1, settings.pool_size), open=False, configure=self._configure,
            timeout=settings.connect_timeout, name="ferryman-catalog", num_workers=1,
        )  # fmt: skip
        try:
            self._pool.open(wait=False)
            # One connection of its own first: a server that is away (or a password refused)
            # fails at once in libpq's own words, not after the pool's wait for a connection.
            self._connect_once()
            run_migrations(_Migrating(self))
        except CatalogUnavailable:
            if reach:
                self.close()
                raise
        except BaseException:
            self.close()
            raise

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        ms = int(self._settings.statement_timeout * 1000)
        conn.execute(f"SET statement_timeout = {ms}")

    @contextmanager
    def transaction(self, kind: str) -> Iterator[_Transaction]:
        if self._closed:
            raise CatalogError(f"catalog {self.location} is closed")
        self.outage.check()
        try:
            with self._pool.connection() as conn:
                if kind == SINGLE:
                    yield _Transaction(conn)
                    return
                with conn.transaction():
                    if kind == MIGRATE:
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                    yield _Transaction(conn)
        except psycopg.Error as exc:
            raise self._failed(exc) from exc

    def key_lock(self, number: int, wait: float) -> AbstractAsyncContextManager[None]:
        """A write lock across servers: advisory.py (the connection is not the pool's)."""
        if self._closed:
            raise CatalogError(f"catalog {self.location} is closed")
        self.outage.check()
        return self._locks.hold(number, wait)

    def lease(self, number: int) -> AbstractContextManager[None]:
        """A lease across servers: a session advisory lock on the write locks' connection."""
        if self._closed:
            raise CatalogError(f"catalog {self.location} is closed")
        self.outage.check()
        return self._locks.hold_now(number)

    def _lock_connection(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self._url, autocommit=True, **self._kwargs)
        self._configure(conn)
        return conn

    def _text(self, exc: BaseException) -> str:
        """An error's message on one line, without the URL's password in any form."""
        return scrub(one_line(exc), self._url)

    def _failed(self, exc: psycopg.Error) -> CatalogError:
        text = self._text(exc)
        if _unreachable(exc):
            self.outage.went_down(text)
            return CatalogUnavailable(f"catalog {self.location} is unreachable: {text}; retry")
        if isinstance(exc, (errors.QueryCanceled, errors.LockNotAvailable)):
            return CatalogError(
                f"catalog {self.location} is busy (a statement ran past"
                f" {self._settings.statement_timeout:g} s): {text}"
            )
        return CatalogError(f"catalog {self.location}: {text}")

    def _connect_once(self) -> None:
        try:
            with psycopg.connect(self._url, **self._kwargs):
                pass
        except psycopg.Error as exc:
            raise self._failed(exc) from exc

    def _probe(self) -> None:
        """Raises unless the server answers a new connection; then the pool's idle
        connections are checked, so broken ones from before are not handed out."""
        with psycopg.connect(self._url, **self._kwargs) as conn:
            conn.execute("SELECT 1")
        self._pool.check()

    def read_version(self, tx: Any) -> int:
        # A query of pg_tables, not to_regclass(): that reads the backend's cache of the
        # system catalogs, which may not have seen another server's migration commit yet.
        tables, meta = tx.execute(
            "SELECT count(*), count(*) FILTER (WHERE tablename = 'meta')"
            " FROM pg_catalog.pg_tables WHERE schemaname = current_schema()"
        ).fetchone()
        if not meta:
            if tables:
                raise CatalogError(
                    f"{self.location} has tables but is not a ferryman catalog (no meta);"
                    " give ferryman a database (or a schema, with options=-csearch_path=...)"
                    " of its own"
                )
            return 0
        return check_version(tx, f"catalog {self.location}")

    def announce(self, tx: Transaction, path: str, stores: Sequence[str]) -> None:
        """One notification per store of `stores`, sent when `tx` commits (one round trip)."""
        payloads = [encode(self._settings.origin, store, path) for store in stores]
        tx.execute("SELECT pg_notify(?, p) FROM unnest(?::text[]) AS p", (CHANNEL, payloads))

    def ready(self) -> None:
        self.outage.check()

    def close(self) -> None:
        """Close the pool and stop probing (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.outage.close()
        self._locks.close()
        self._pool.close(timeout=self._settings.connect_timeout)


class _Migrating:
    """The database as the shared migration runner sees it: each step is one script."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db
        self.location = db.location
        self.transaction = db.transaction
        self.read_version = db.read_version

    def steps(self, version: int) -> list[str]:
        return [POSTGRESQL[version]]


def _unreachable(exc: psycopg.Error) -> bool:
    """The server did not answer: no connection, one lost, or the server going away."""
    if isinstance(exc, psycopg_pool.PoolTimeout | psycopg.InterfaceError):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")
