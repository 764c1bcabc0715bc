"""The catalog: every object ferryman stored, and every change to it, in SQLite or PostgreSQL.

See `ferryman.catalog.api` for the interface the rest of ferryman uses, `db` for
the API over the tables, `open` for choosing a backend by URL.
"""

from __future__ import annotations

from ferryman.catalog.api import Catalog, CatalogError, CatalogUnavailable
from ferryman.catalog.db import CatalogEntry, Intent, SqliteCatalog

__all__ = [
    "Catalog",
    "CatalogEntry",
    "CatalogError",
    "CatalogUnavailable",
    "Intent",
    "SqliteCatalog",
]
