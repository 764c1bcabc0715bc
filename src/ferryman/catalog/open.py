"""A catalog for a `--catalog` URL: the backend it names, opened and migrated.

psycopg is imported only for a PostgreSQL URL, and only here: a server
with the default SQLite catalog neither needs nor loads it.
"""

from __future__ import annotations

from ferryman.catalog.api import Catalog
from ferryman.catalog.db import SqlCatalog, SqliteCatalog
from ferryman.catalog.location import SQLITE, CatalogLocation
from ferryman.errors import ConfigError

EXTRA = "ferryman[postgresql]"


def open_catalog(
    location: CatalogLocation,
    *,
    pool_size: int = 4,
    connect_timeout: float = 5.0,
    statement_timeout: float = 5.0,
    reach: bool = True,
    origin: str = "",
) -> Catalog:
    """The catalog at `location`. CatalogError when it cannot be used; ConfigError when
    PostgreSQL support is not installed. `reach`: see postgres.PostgresDatabase."""
    if location.kind == SQLITE:
        return SqliteCatalog(location.target)
    try:
        from ferryman.catalog.postgres import PostgresDatabase, PostgresSettings
    except ImportError as exc:
        raise ConfigError(
            f"--catalog {location.shown}: PostgreSQL support is not installed ({exc});"
            f" install it with: pip install '{EXTRA}' (it loads libpq: on Debian, libpq5)"
        ) from None
    settings = PostgresSettings(pool_size, connect_timeout, statement_timeout, origin)
    return SqlCatalog(PostgresDatabase(location.target, settings, reach=reach))
