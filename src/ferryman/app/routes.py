"""The application: which handler answers which request."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable

from ferryman.app.archive import ArchiveServer
from ferryman.app.auth import Access, Authorizer, SigningKey, TokenTable
from ferryman.app.digestindex import DigestIndex
from ferryman.app.files import FileServer
from ferryman.app.paths import resolve
from ferryman.app.spool import Spool
from ferryman.app.uploads import Uploads, start_orphan_sweep
from ferryman.catalog.db import Catalog, CatalogError
from ferryman.config import Config
from ferryman.errors import ConfigError, HttpError
from ferryman.http.body import BodyReader
from ferryman.http.parser import Request
from ferryman.http.response import Response

log = logging.getLogger("ferryman")
READ_METHODS = frozenset(("GET", "HEAD"))
WRITE_METHODS = frozenset(("PUT", "DELETE"))


class App:
    """Handlers return a Response, or an awaitable of one when they must wait."""

    def __init__(self, config: Config) -> None:
        self.auth = Authorizer(
            tokens=TokenTable.load(config.tokens) if config.tokens else None,
            signing_key=SigningKey.load(config.signing_key) if config.signing_key else None,
            private=config.private,
            allow_write=config.allow_write,
        )
        self.catalog = open_catalog(config)
        self.files = FileServer(config)
        self.files.archives = ArchiveServer(self.files, Spool(str(config.state_path / "spool")))
        if self.catalog is not None:
            self.files.digests = DigestIndex(self.catalog)
        self.uploads = (
            Uploads(self.files, config.verify_writes, self.catalog) if config.allow_write else None
        )
        if self.uploads is not None:
            start_orphan_sweep(self.files.root, older_than=2 * config.body_timeout)
        allowed = "GET, HEAD, PUT, DELETE" if self.uploads else "GET, HEAD"
        self._not_allowed = HttpError(
            405, "method_not_allowed", f"allowed here: {allowed}", (("Allow", allowed),)
        )
        # Anonymous reads skip the authorizer when nothing could make them fail.
        self._open_reads = not config.private

    def handle(self, request: Request, body: BodyReader | None) -> Response | Awaitable[Response]:
        method = request.method
        if method in READ_METHODS:
            if not self._open_reads or request.query or "authorization" in request.headers:
                self.auth.check(request, Access.READ, resolve(request.path).url(), int(time.time()))
            return self.files.get(request)
        if method in WRITE_METHODS and self.uploads is not None:
            self.auth.check(request, Access.WRITE, resolve(request.path).url(), int(time.time()))
            if method == "PUT":
                return self.uploads.put(request, body)
            return self.uploads.delete(request)
        raise self._not_allowed

    def close(self) -> None:
        self.files.close()
        if self.catalog is not None:
            self.catalog.close()


def open_catalog(config: Config) -> Catalog | None:
    """The catalog under --state-dir: created when writes are allowed, else used if present.

    A server that writes must record what it writes, so an unusable catalog
    stops it; a read-only server serves on without Repr-Digest and says so.
    """
    state = config.state_path
    path = state / "catalog.db"
    if not config.allow_write and not path.exists():
        return None
    try:
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        return Catalog(path)
    except (OSError, CatalogError) as exc:
        if config.allow_write:
            raise ConfigError(f"cannot open the catalog at {path}: {exc}") from None
        log.warning("catalog unusable, serving without Repr-Digest: %s", exc)
        return None
