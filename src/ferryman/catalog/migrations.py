"""The one migration runner both backends use: numbered steps, one transaction each.

The steps are `schema.MIGRATIONS` (SQLite's text; dialect.py says how
PostgreSQL runs each). The version is the number of steps applied, kept in
the `meta` table's `schema_version` row and bumped in the step's own
transaction, so a crash leaves the database at one version or the next.

Two processes starting at once (the workers of one server, or two servers
on one PostgreSQL) migrate once: each step's transaction is of kind
MIGRATE, which the backend makes exclusive (SQLite's write lock;
PostgreSQL's advisory lock), and the version is read again inside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from ferryman.catalog.api import MIGRATE, READ, CatalogError, Transaction
from ferryman.catalog.schema import LATEST

_BUMP = "UPDATE meta SET value = ? WHERE key = 'schema_version'"


class Migratable(Protocol):
    location: str

    def transaction(self, kind: str) -> AbstractContextManager[Transaction]: ...

    def read_version(self, tx: Transaction) -> int: ...

    def steps(self, version: int) -> Sequence[str]:
        """The statements that take the database from `version` to `version + 1`."""
        ...


def run_migrations(db: Migratable) -> int:
    """Bring the database to LATEST, one step per transaction; return the version."""
    with db.transaction(READ) as tx:
        version = db.read_version(tx)
    while version < LATEST:
        with db.transaction(MIGRATE) as tx:
            # Read again inside the exclusive step: another process may have migrated meanwhile.
            version = db.read_version(tx)
            if version < LATEST:
                for statement in db.steps(version):
                    tx.execute(statement)
                version += 1
                tx.execute(_BUMP, (version,))
    return version


def check_version(tx: Transaction, named: str) -> int:
    """The version in `meta` (which must exist), refused when newer than this code knows."""
    row = tx.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None or not isinstance(row[0], int):
        raise CatalogError(f"{named} has no valid schema_version in its meta table")
    version: int = row[0]
    if version > LATEST:
        raise CatalogError(
            f"{named} has schema version {version}, newer than the {LATEST} this ferryman"
            " knows; refusing to open it (run a newer ferryman, or move it away)"
        )
    return version
