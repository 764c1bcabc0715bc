"""The catalog: every object ferryman stored, and every change to it, in SQLite.

See `ferryman.catalog.db` for the API and who owns what, `schema` for the migrations.
"""

from __future__ import annotations

from ferryman.catalog.db import Catalog, CatalogEntry, CatalogError, Intent

__all__ = ["Catalog", "CatalogEntry", "CatalogError", "Intent"]
