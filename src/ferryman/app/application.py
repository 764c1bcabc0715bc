"""The application: what serves SOURCE, what writes to it, and what each worker needs
started and stopped around them.

Reads go to the reader of SOURCE: a LocalReader (app/local.py) over the Root
of a directory, or a RemoteReader (app/remote.py) over a store; PUT and
DELETE go to the one write flow (app/writes.py) when writes are allowed. The
dispatch between them, and who may ask, is app/dispatch.py, run for every
request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING

from ferryman.app.auth import Authorizer, SigningKey, TokenTable
from ferryman.app.digestindex import DigestIndex
from ferryman.app.dispatch import Dispatch, Handler, Reader, allowed_methods
from ferryman.app.local import LocalReader
from ferryman.app.localtarget import LocalTarget
from ferryman.app.paths import configure_limits
from ferryman.app.places import Place, replicas
from ferryman.app.readiness import (
    Check,
    Readiness,
    cache_check,
    catalog_check,
    directory_check,
    store_check,
)
from ferryman.app.remote import RemoteReader
from ferryman.app.reserved import Reserved
from ferryman.app.spool import Spool
from ferryman.app.staging import source_staging, store_id
from ferryman.app.storetarget import StoreTarget
from ferryman.app.uploadrecords import UploadOwner
from ferryman.app.uploadsweep import UploadSweep
from ferryman.app.writelock import WriteLocks
from ferryman.app.writes import Writes
from ferryman.app.writetarget import Target
from ferryman.boot import open_catalog
from ferryman.catalog.api import Catalog
from ferryman.catalog.location import SQLITE
from ferryman.config import Config
from ferryman.http.body import BodyReader
from ferryman.http.cors import Cors
from ferryman.http.parser import Request
from ferryman.http.response import Response
from ferryman.metrics.rundir import DIRECTORY_ENV
from ferryman.serverid import server_id
from ferryman.stores.base import Store

if TYPE_CHECKING:
    from ferryman.app.root import Root
    from ferryman.cache.client import CacheClient
    from ferryman.stores.s3 import S3Store


class Application:
    """The readers, writers and checks of one worker, and the dispatch between them."""

    def __init__(self, config: Config) -> None:
        configure_limits(config)  # before any path is resolved
        self.auth = Authorizer(
            tokens=TokenTable.load(config.tokens) if config.tokens else None,
            signing_key=SigningKey.load(config.signing_key) if config.signing_key else None,
            private=config.private,
            allow_write=config.allow_write,
        )
        self.catalog = open_catalog(config, reach=False)  # the boot step reached it
        self.store: Store | None = None
        self.cache: CacheClient | None = None
        self.reader: Reader
        self.uploads: Writes | None = None
        self.sweep: UploadSweep | None = None  # multipart uploads a killed process left
        self._sweeping: asyncio.Task[None] | None = None
        self._sweep_every = config.upload_sweep_interval
        checks: dict[str, Check] = {}
        if config.is_remote:
            checks["store"] = store_check(self._serve_store(config))
            if self.cache is not None:
                checks["cache"] = cache_check(self.cache)
        else:
            root = self._serve_directory(config)
            checks["store"] = directory_check(root.path, root.fd)
        if self.catalog is not None:
            checks["catalog"] = catalog_check(self.catalog)
        metrics_dir = os.environ.get(DIRECTORY_ENV) if config.metrics else None
        self.reserved = Reserved(Readiness(checks, config.ready_timeout), metrics_dir or None,
                                 self.catalog, config.metrics_token)  # fmt: skip
        allowed = allowed_methods(writes=self.uploads is not None)
        cors = None
        if config.cors_origin:
            max_age = int(config.cors_max_age)
            credentials = config.cors_credentials
            cors = Cors(config.cors_origin, methods=allowed, max_age=max_age,
                        credentials=credentials)  # fmt: skip
        self.dispatch = Dispatch(self.reader, self.reserved, self.auth, self.uploads,
                                 open_reads=not config.private, cors=cors)  # fmt: skip

    def handler(self) -> Handler:
        """What answers each request, bound once by the worker's context: the compiled
        dispatch (app/dispatch.py)."""
        return self.dispatch.handle

    def handle(self, request: Request, body: BodyReader | None) -> Response | Awaitable[Response]:
        """Answer one request (what handler() gives does the same, without this call)."""
        return self.dispatch.handle(request, body)

    def _serve_directory(self, config: Config) -> Root:
        reader = self.reader = LocalReader.of(config)
        if self.catalog is not None:
            reader.files.digests = DigestIndex(self.catalog, threaded=_remote_catalog(config))
        if config.allow_write:
            root = reader.root
            target = LocalTarget(root.fd, config.verify_writes, source_staging(config))
            self._writes(config, root.path, target)
        return reader.root

    def _serve_store(self, config: Config) -> S3Store:
        from ferryman.stores.s3 import S3Store  # the S3 client is imported only when used

        store = S3Store.from_config(config)
        self.store = store
        cache = None
        if config.cache_dir:
            from ferryman.cache.client import open_cache_client

            cache = self.cache = open_cache_client(config)
        reader = self.reader = RemoteReader(config, store, cache)
        if self.catalog is not None:
            reader.digests = DigestIndex(self.catalog, threaded=_remote_catalog(config))
        if config.allow_write:
            target = StoreTarget(
                store,
                Spool.of(config),
                verify_mode=config.verify_writes,
                attempts=config.upload_attempts,
                changed=cache.forget if cache is not None else None,
            )
            self._writes(config, config.source, target)
        return store

    def _writes(self, config: Config, source: str, target: Target) -> None:
        """PUT and DELETE through `target` and to each replica, recorded in the catalog
        (made when writes are on)."""
        assert self.catalog is not None
        scope = store_id(source)
        locks = WriteLocks(str(config.state_path / "locks"), config.lock_timeout,
                           fleet=self.catalog, scope=scope)  # fmt: skip
        place = Place(source, scope, target)
        server = server_id(config.state_path)
        self.uploads = Writes(place, self.catalog, locks, replicas(config),
                              server=server, settle_after=config.settle_after)  # fmt: skip
        places = (place, *self.uploads.replicas)
        self.sweep = _record_multipart_uploads(self.catalog, server, places)

    def tick(self) -> None:
        """Once a second, from the worker: housekeeping of the readers."""
        self.reader.tick()

    def close(self) -> None:
        self.reader.close()
        if self.catalog is not None:
            self.catalog.close()

    async def prepare(self) -> None:
        """Before the first request: a store's client is made (not at the first request),
        and writes a crash interrupted are settled."""
        if self.store is not None:
            await self.store.prepare()
        if self.uploads is not None:
            await self.uploads.settle()  # what a worker killed mid-write left undecided
        if self.sweep is not None:
            # Its first sweep runs now, in the background: a slow store delays no start.
            every = self._sweep_every
            self._sweeping = asyncio.get_running_loop().create_task(self.sweep.run(every))

    async def aclose(self) -> None:
        """Release what needs the event loop (the store's client); then close()."""
        if self._sweeping is not None:
            self._sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeping
        if self.uploads is not None:
            await self.uploads.aclose()
        if self.store is not None:
            await self.store.close()
        self.close()


def _record_multipart_uploads(
    catalog: Catalog, server: str, places: Iterable[Place]
) -> UploadSweep | None:
    """Record the multipart uploads to each S3 store written to, and sweep those stores of
    the uploads a killed process left (none to sweep without an S3 store)."""
    owner = UploadOwner(catalog, server)
    stores: dict[str, S3Store] = {}
    for place in places:
        if not place.id.startswith("s3://"):
            continue  # a directory: no multipart uploads (and no S3 client imported)
        from ferryman.stores.s3 import S3Store

        store = getattr(place.target, "store", None)
        if isinstance(store, S3Store):
            store.records = owner.store(place.id)
            stores[place.id] = store
    return UploadSweep(owner, stores) if stores else None


def _remote_catalog(config: Config) -> bool:
    """Whether the catalog is across a network (PostgreSQL), not a local SQLite file."""
    return config.catalog_location.kind != SQLITE
