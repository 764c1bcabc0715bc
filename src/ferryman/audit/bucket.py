"""An S3 bucket (prefix), audited as a store.

Listed by stores/s3listing.py, which needs neither botocore nor an event
loop: a listing-only audit of a bucket starts as fast as one of a
directory. A copy is read (--deep, --stale-after) through the S3 store
(stores/s3.py, aiobotocore) on a `Portal`, an event loop in a thread of its
own that the synchronous audit calls into once per chunk; the store and the
portal are made on the first read. A copy's identifier is its ETag.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Coroutine, Generator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ferryman.audit.model import Stored
from ferryman.audit.stores import StoreUnavailable, Unreadable
from ferryman.config import Config
from ferryman.stores.base import StoreError
from ferryman.stores.s3listing import listing_for
from ferryman.stores.s3source import check_endpoint

if TYPE_CHECKING:
    import asyncio

    from ferryman.stores.s3 import S3Store


class ObjectStore:
    """An S3 bucket (prefix), audited as a store: listed without botocore, read with it."""

    def __init__(self, name: str, config: Config, portal: Portal) -> None:
        self.name = name
        self.id = name.rstrip("/")
        self.config = config
        self.portal = portal
        self.lister = listing_for(name, check_endpoint(config.s3_endpoint))
        self._reader: S3Store | None = None
        # (key, ETag) of the last read: every byte of it came from that version (If-Match).
        self.version_read: tuple[str, str] | None = None

    def listing(self, after: str | None = None) -> Generator[Stored, None, None]:
        """Every copy, in key order; after `after` only (a resumed run lists no page
        it has checked)."""
        try:
            for page in self.lister.pages(start_after=after):
                for key, size, etag in page:
                    yield Stored(key, size, ident=etag)
        except StoreError as exc:
            raise StoreUnavailable(f"{self.name}: cannot list it ({exc.detail})") from None

    def read(self, key: str) -> Iterator[bytes]:
        store = self._store()
        try:
            info = self.portal.call(store.stat(key))
            self.version_read = (key, info.etag)
            yield from self.portal.iterate(store.read(key, 0, info.size, if_match=info.etag))
        except StoreError as exc:
            raise Unreadable(exc.detail) from None

    def _store(self) -> S3Store:
        """The S3 store that reads copies, made on the first read."""
        if self._reader is None:
            from ferryman.stores.s3 import S3Store

            self._reader = S3Store.from_url(self.name, self.config)
        return self._reader

    def close(self) -> None:
        self.lister.close()
        if self._reader is not None:
            self.portal.call(self._reader.close())


T = TypeVar("T")


class Portal:
    """An event loop in a thread of its own, for the synchronous audit to call into;
    started on first use (a listing-only audit never starts it)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # the stores are audited in threads of their own

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                import asyncio

                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                                name="ferryman-audit-io")  # fmt: skip
                self._thread.start()
            return self._loop

    def call(self, work: Coroutine[Any, Any, T]) -> T:
        import asyncio

        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

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
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _next(items: AsyncIterator[T]) -> T:
    return await items.__anext__()
