"""An S3 bucket (prefix), audited as a store, through an event loop in a thread of its own.

The audit runs synchronously, in one thread; the S3 client lives on an
event loop in another (a `Portal`), which a listing crosses once per
thousand keys and a read once per chunk. A bucket is listed with
ListObjectsV2 without a delimiter, page by page; a copy's identifier is its
ETag. Imported only when a store is a bucket: a directory's audit needs no
event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Coroutine, Generator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ferryman.audit.model import Stored
from ferryman.audit.stores import StoreUnavailable, Unreadable
from ferryman.stores.base import StoreError

if TYPE_CHECKING:
    from ferryman.stores.s3 import S3Store

_BATCH = 1000  # keys of a bucket listing handed from the I/O thread at a time


class ObjectStore:
    """An S3 bucket (prefix), audited as a store, through an event loop in another thread."""

    def __init__(self, name: str, store: S3Store, portal: Portal) -> None:
        self.name = name
        self.store = store
        self.portal = portal
        self.id = name.rstrip("/")
        # (key, ETag) of the last read: every byte of it came from that version (If-Match).
        self.version_read: tuple[str, str] | None = None
        # Making the client takes tenths of a second (botocore's models): begun now, it
        # is made while the audit reads its inventory and what the catalog knows, and
        # the first page is asked for sooner. A failure is the first request's to report.
        self._preparing = portal.begin(store.prepare())

    def listing(self) -> Generator[Stored, None, None]:
        try:
            for batch in self.portal.iterate(_batches(self.store.list_all())):
                for key, size, etag in batch:
                    yield Stored(key, size, ident=etag)
        except StoreError as exc:
            raise StoreUnavailable(f"{self.name}: cannot list it ({exc.detail})") from None

    def read(self, key: str) -> Iterator[bytes]:
        try:
            info = self.portal.call(self.store.stat(key))
            self.version_read = (key, info.etag)
            yield from self.portal.iterate(self.store.read(key, 0, info.size, if_match=info.etag))
        except StoreError as exc:
            raise Unreadable(exc.detail) from None

    def close(self) -> None:
        self.portal.finish(self._preparing)  # never a client made after it was closed
        self.portal.call(self.store.close())


async def _batches(
    items: AsyncIterator[tuple[str, int, str]],
) -> AsyncIterator[list[tuple[str, int, str]]]:
    """Items in lists of _BATCH: one hop between threads per batch, not per key."""
    batch = []
    async for item in items:
        batch.append(item)
        if len(batch) == _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


T = TypeVar("T")


class Portal:
    """An event loop in a thread of its own, for the synchronous audit to call into."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="ferryman-audit-io")  # fmt: skip
        self._thread.start()

    def call(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    def begin(self, work: Coroutine[Any, Any, None]) -> concurrent.futures.Future[None]:
        """Start `work` and carry on; `finish` waits for it, whatever its outcome."""
        return asyncio.run_coroutine_threadsafe(work, self.loop)

    def finish(self, started: concurrent.futures.Future[None]) -> None:
        with contextlib.suppress(Exception):  # begun to save time; the calls that
            started.result()  # need its result make it again and report the failure

    def iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self.call(_next(items))
                except StopAsyncIteration:
                    return
        finally:
            close = getattr(items, "aclose", None)
            if close is not None:
                self.call(close())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def _next(items: AsyncIterator[T]) -> T:
    return await items.__anext__()
