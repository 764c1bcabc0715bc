"""The names a server's change notifications use, and whether its filler listens.

Kept apart from notices.py, the listener itself, because the arbiter needs
`server_origin` when it opens the catalog, and notices.py brings asyncio
(about 11 MiB of RSS) into a process that runs no event loop.
"""

from __future__ import annotations

import hashlib
import os
import socket

from ferryman.catalog.location import POSTGRESQL
from ferryman.config import Config


def listens(config: Config) -> bool:
    """Whether this server learns of other servers' changes: a cache and a PostgreSQL catalog."""
    return bool(config.cache_dir) and config.catalog_location.kind == POSTGRESQL


def server_origin(config: Config) -> str:
    """This server's name in its notifications: the same in the workers (which send) and
    the filler (which skips its own), different for each cache directory of each host."""
    if not config.cache_dir:
        return ""
    place = f"{socket.gethostname()}\0{os.path.realpath(config.cache_dir)}"
    return hashlib.sha256(place.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def store_name(config: Config) -> str:
    """SOURCE as the catalog's copies name it (the bucket URL without a trailing slash)."""
    return config.source.rstrip("/")
