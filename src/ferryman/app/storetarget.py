"""Writes to objects of a store: nothing is reported stored until ferryman has seen it stored.

The body is spooled (app/spool.py: a transfer-bound temporary file, swept
with its worker if that dies). The commit asks the store to keep the bytes,
with the SHA-256 as checksum and in the object's metadata (multipart above
--s3-multipart-threshold), then checks them: a HEAD must show the size and
that SHA-256, and with --verify-writes full the object is read back and
hashed. A store that fails or keeps something else is tried again from the
spool (--upload-attempts, with backoff); if no attempt verifies, the answer
is 502. After any try the cache is told to forget the key: the store may
hold new bytes, whatever the answer was.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable

from ferryman.app.intake import BATCH, storage_error
from ferryman.app.paths import RequestPath
from ferryman.app.root import BucketRoot
from ferryman.app.spool import Spool
from ferryman.app.storestream import close_stream
from ferryman.app.writetarget import Staged, Version
from ferryman.catalog.db import Intent
from ferryman.errors import HttpError
from ferryman.stores.base import AccessDenied, NotFound, ObjectInfo, Store, StoreError, http_error

log = logging.getLogger("ferryman.uploads")
FIRST_RETRY_DELAY = 0.25  # seconds; doubled after each failed attempt


def version_of(info: ObjectInfo) -> Version:
    return Version(
        size=info.size,
        etag=info.etag,
        mtime_ns=info.last_modified * 1_000_000_000,
        ident=info.etag,
    )


class StoreTarget:
    def __init__(
        self,
        store: Store,
        spool: Spool,
        *,
        verify_mode: str,
        attempts: int,
        changed: Callable[[str], None] | None = None,
        owned: bool = False,
    ) -> None:
        self._owned = owned  # a replica's store: closed with the target
        self.store = store
        self.spool = spool
        self.verify_mode = verify_mode
        self.attempts = attempts
        self._changed = changed  # the cache's forget

    async def open(self, path: RequestPath, *, create: bool) -> StoreSlot:
        return StoreSlot(self, BucketRoot.key(path))

    def changed(self, key: str) -> None:
        if self._changed is not None:
            self._changed(key)

    async def stat(self, key: str) -> ObjectInfo | None:
        try:
            return await self.store.stat(key)
        except NotFound:
            return None
        except StoreError as exc:
            raise http_error(exc) from None

    async def replicate(self, path: RequestPath, fd: int, size: int, sha256: bytes) -> Version:
        slot = await self.open(path, create=True)
        # The upload reads `fd` itself: nothing to spool.
        return await slot.commit(
            Staged(fd, ""), size=size, sha256=sha256, create_only=False, content_type=None
        )

    async def remove_copy(self, path: RequestPath) -> bool:
        slot = await self.open(path, create=False)
        current = await slot.current()
        if current is None:
            return False
        await slot.remove(current)
        return True

    async def aclose(self) -> None:
        if self._owned:
            await self.store.close()

    async def put_happened(self, intent: Intent) -> Version | None:
        info = await self.stat(intent.path)
        if info is None or info.size != intent.size or info.sha256 != intent.sha256:
            return None
        return version_of(info)

    async def delete_happened(self, intent: Intent) -> bool:
        info = await self.stat(intent.path)
        return info is None or info.etag != intent.ident


class StoreSlot:
    def __init__(self, target: StoreTarget, key: str) -> None:
        self.target = target
        self.key = key

    def close(self) -> None:
        """A store key holds nothing open."""

    async def current(self) -> Version | None:
        info = await self.target.stat(self.key)
        return None if info is None else version_of(info)

    async def stage(self) -> Staged:
        try:
            fd, name = await asyncio.to_thread(self.target.spool.create)
        except OSError as exc:
            raise storage_error(exc, "spool the body") from None
        return Staged(fd, name)

    async def seal(self, staged: Staged, size: int, sha256: bytes) -> None:
        """Nothing to make durable: a spool file lives only as long as its request."""

    async def commit(
        self, staged: Staged, *, size: int, sha256: bytes, create_only: bool,
        content_type: str | None,
    ) -> Version:  # fmt: skip
        """Upload from the spool until the store shows exactly these bytes; else 502."""
        delay = FIRST_RETRY_DELAY
        problem = ""
        attempts = self.target.attempts
        for attempt in range(1, attempts + 1):
            try:
                await self.target.store.upload(self.key, staged.fd, size, sha256, content_type)
                info = await self.target.store.stat(self.key)
                problem = _kept_wrong(info, size, sha256)
                if not problem and self.target.verify_mode == "full":
                    problem = await self._read_back(info, sha256)
                if not problem:
                    return version_of(info)
            except AccessDenied as exc:
                raise http_error(exc) from None  # no retry changes the store's mind
            except StoreError as exc:
                problem = f"{type(exc).__name__}: {exc.detail}"
            log.warning(
                "upload of %s, attempt %d of %d, not verified: %s",
                self.key, attempt, attempts, problem,
            )  # fmt: skip
            if attempt < attempts:
                await asyncio.sleep(delay)
                delay *= 2
        raise HttpError(
            502,
            "store_unverified",
            f"the store did not keep the object intact in {attempts} attempt(s): {problem}",
        )

    async def _read_back(self, info: ObjectInfo, sha256: bytes) -> str:
        """'' when the stored bytes hash to `sha256`; else what differs."""
        hasher = hashlib.sha256()
        batch = bytearray()
        reader = self.target.store.read(self.key, 0, info.size, if_match=info.etag)
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

    async def remove(self, current: Version) -> None:
        try:
            await self.target.store.delete(self.key)
        except StoreError as exc:
            raise http_error(exc) from None

    async def discard(self, staged: Staged) -> None:
        self.target.spool.discard(staged.fd, staged.name)


def _kept_wrong(info: ObjectInfo, size: int, sha256: bytes) -> str:
    """'' when a HEAD shows what was sent (size and the SHA-256 in its metadata)."""
    if info.size != size:
        return f"the store holds {info.size} bytes, {size} were sent"
    if info.sha256 != sha256.hex():
        return "the store's SHA-256 metadata differs from the bytes sent"
    return ""
