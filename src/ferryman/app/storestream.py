"""An object's bytes read from a store as one stream: ranged GETs pinned to a version.

Async generators, kept apart from the modules of the request path that are
compiled (mypyc cannot compile an async generator yet): app/remote.py
answers with these when it reads a store without the cache, and the cache
(cache/cached.py) falls back to them when it declines a block mid-answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from ferryman.http.spans import Span
from ferryman.stores.base import Store


async def read_spans(
    store: Store, key: str, etag: str, spans: Sequence[bytes | Span]
) -> AsyncIterator[bytes]:
    """Literals as they are, each range as a ranged GET of the pinned version."""
    for span in spans:
        if isinstance(span, bytes):
            yield span
            continue
        reader = store.read(key, span.start, span.end, if_match=etag)
        try:
            async for chunk in reader:
                yield chunk
        finally:
            await close_stream(reader)


async def first_chunk(stream: AsyncIterator[bytes]) -> bytes:
    """The stream's first bytes (b"" for an empty body); its failure closes it and raises."""
    try:
        return await anext(stream, b"")
    except BaseException:
        await close_stream(stream)
        raise


async def prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        if first:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        await close_stream(rest)


async def close_stream(stream: Any) -> None:
    """Close an async iterator that can be closed (an async generator, a store read)."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
