"""PUT and DELETE on a store: nothing is reported stored until ferryman has seen it stored.

A PUT streams its body into a spool file (a transfer-bound temporary file,
spool.py) while every digest the client sent is checked and SHA-256 is
computed (intake.py). Then, under the key's lock:

1. the store is asked to keep the bytes, with the SHA-256 as checksum and in
   the object's metadata (multipart above --s3-multipart-threshold);
2. a HEAD must show the right size and that SHA-256;
3. with --verify-writes full, the object is read back and hashed.

A store that fails or keeps something else is tried again from the spool
(--upload-attempts, with backoff); if no attempt verifies, the answer is 502
and the catalog is not touched. Only a verified object is recorded. The
spool file is removed however the request ends (and swept if the worker
dies).

Preconditions are checked against a HEAD taken before the upload. The store
has no compare-and-swap that every S3-compatible store implements, so two
writers racing on one key through different servers are ordered by the
store, last write wins; within one worker the key's lock orders them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable

from ferryman.app.intake import (
    BATCH,
    BodyChecks,
    check_write_preconditions,
    listed_live,
    receive_body,
    record_delete,
    record_write,
    require_length,
    storage_error,
    write_path,
)
from ferryman.app.remote import close_stream, object_key
from ferryman.app.spool import Spool
from ferryman.catalog.db import Catalog
from ferryman.config import Config
from ferryman.errors import HttpError
from ferryman.http.body import BodyReader
from ferryman.http.conditional import Validators
from ferryman.http.digest import format_repr_digest
from ferryman.http.parser import Request
from ferryman.http.response import Response
from ferryman.keylocks import KeyLocks
from ferryman.stores.base import (
    AccessDenied,
    NotFound,
    ObjectInfo,
    Store,
    StoreError,
    http_error,
)

log = logging.getLogger("ferryman.uploads")
FIRST_RETRY_DELAY = 0.25  # seconds; doubled after each failed attempt


class RemoteUploads:
    def __init__(
        self,
        store: Store,
        spool: Spool,
        config: Config,
        catalog: Catalog | None = None,
        changed: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.spool = spool
        self.verify_mode = config.verify_writes
        self.attempts = config.upload_attempts
        self.catalog = catalog
        self.changed = changed  # told the key after a write or delete (the cache drops it)
        self._locks = KeyLocks()

    # -- PUT ------------------------------------------------------------------------

    async def put(self, request: Request, body: BodyReader | None) -> Response:
        path = write_path(request)
        key = object_key(path)
        require_length(request)
        checks = BodyChecks.from_request(request)
        try:
            before = await self._current(key)
            create_only = check_write_preconditions(request, _validators(before))
            fd, name = await asyncio.to_thread(self.spool.create)
        except StoreError as exc:
            raise http_error(exc) from None
        except OSError as exc:
            raise storage_error(exc, "spool the body") from None
        try:
            size = await receive_body(body, fd, checks)
            checks.verify()
            async with self._locks.hold(key):
                now = await self._current(key)
                if create_only or now != before:  # it changed while the body arrived
                    check_write_preconditions(request, _validators(now))
                try:
                    info = await self._store_verified(
                        key, fd, size, checks.sha256, request.headers.get("content-type")
                    )
                    await record_write(
                        self.catalog, key, size=info.size, sha256=checks.sha256,
                        mtime_ns=info.last_modified * 1_000_000_000, etag=info.etag,
                    )  # fmt: skip
                finally:
                    # Once an upload was tried the store may hold new bytes, whatever
                    # is answered (502 unverified, 503 unrecorded): stop serving the old.
                    self._changed(key)
        except StoreError as exc:
            raise http_error(exc) from None
        except ConnectionError:
            raise  # the client left mid-body: nothing stored, nobody to answer
        except OSError as exc:
            raise storage_error(exc, "spool the body") from None
        finally:
            self.spool.discard(fd, name)
        headers = [("ETag", info.etag), ("Repr-Digest", format_repr_digest(checks.sha256))]
        if before is None:
            return Response(201, [*headers, ("Location", path.url())])
        return Response(204, headers)

    async def _store_verified(
        self, key: str, fd: int, size: int, sha256: bytes, content_type: str | None
    ) -> ObjectInfo:
        """Upload from the spool until the store shows exactly these bytes; else 502."""
        delay = FIRST_RETRY_DELAY
        problem = ""
        for attempt in range(1, self.attempts + 1):
            try:
                await self.store.upload(key, fd, size, sha256, content_type)
                info = await self.store.stat(key)
                problem = _kept_wrong(info, size, sha256)
                if not problem and self.verify_mode == "full":
                    problem = await self._read_back(key, info, sha256)
                if not problem:
                    return info
            except AccessDenied:
                raise  # no retry changes the store's mind
            except StoreError as exc:
                problem = f"{type(exc).__name__}: {exc.detail}"
            log.warning(
                "upload of %s, attempt %d of %d, not verified: %s",
                key, attempt, self.attempts, problem,
            )  # fmt: skip
            if attempt < self.attempts:
                await asyncio.sleep(delay)
                delay *= 2
        raise HttpError(
            502,
            "store_unverified",
            f"the store did not keep the object intact in {self.attempts} attempt(s): {problem}",
        )

    async def _read_back(self, key: str, info: ObjectInfo, sha256: bytes) -> str:
        """'' when the stored bytes hash to `sha256`; else what differs."""
        hasher = hashlib.sha256()
        batch = bytearray()
        reader = self.store.read(key, 0, info.size, if_match=info.etag)
        try:
            async for chunk in reader:
                batch += chunk
                if len(batch) >= BATCH:  # hashing a MiB is ~1 ms: off the event loop
                    await asyncio.to_thread(hasher.update, batch)
                    batch = bytearray()
        finally:
            await close_stream(reader)
        hasher.update(batch)
        if hasher.digest() != sha256:
            return "the bytes read back differ from the bytes received"
        return ""

    # -- DELETE -----------------------------------------------------------------------

    async def delete(self, request: Request) -> Response:
        key = object_key(write_path(request))
        try:
            async with self._locks.hold(key):
                before = await self._current(key)
                if before is None and not await listed_live(self.catalog, key):
                    raise HttpError(404, "not_found", "no such object")
                check_write_preconditions(request, _validators(before))
                if before is not None:  # else gone already: only the record is missing
                    await self.store.delete(key)
        except StoreError as exc:
            raise http_error(exc) from None
        self._changed(key)
        await record_delete(self.catalog, key)
        return Response(204)

    # -- shared -----------------------------------------------------------------------------

    async def _current(self, key: str) -> ObjectInfo | None:
        try:
            return await self.store.stat(key)
        except NotFound:
            return None

    def _changed(self, key: str) -> None:
        if self.changed is not None:
            self.changed(key)


def _kept_wrong(info: ObjectInfo, size: int, sha256: bytes) -> str:
    """'' when a HEAD shows what was sent (size and the SHA-256 in its metadata)."""
    if info.size != size:
        return f"the store holds {info.size} bytes, {size} were sent"
    if info.sha256 != sha256.hex():
        return "the store's SHA-256 metadata differs from the bytes sent"
    return ""


def _validators(info: ObjectInfo | None) -> Validators | None:
    if info is None:
        return None
    return Validators(etag=info.etag, last_modified=info.last_modified)
