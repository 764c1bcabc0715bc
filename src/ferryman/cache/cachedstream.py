"""The streamed body of a cached object: each block's bytes as the block lands.

An async generator, kept apart from cache/cached.py so that module can be
compiled with the request path (mypyc cannot compile an async generator
yet). CachedObject.block_or_none does the work of each block (asking the
filler, reading, opening); this only walks the spans and, when the cache
declines a block, hands the rest of the answer to the store (`fallback`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

from ferryman.http.spans import Span
from ferryman.stores.base import PreconditionFailed

if TYPE_CHECKING:
    from ferryman.cache.cached import CachedObject

Section = bytes | Span  # a literal of the body, or bytes of the object
# Literals and ranges of the pinned version, streamed from the store instead of the cache.
Fallback = Callable[[Sequence[Section]], AsyncIterator[bytes]]


async def cached_stream(
    cached: CachedObject, spans: list[Section], fallback: Fallback | None
) -> AsyncIterator[bytes]:
    """The bytes of `spans` from `cached`, the rest from `fallback` once a block is declined."""
    block_size = cached.reader.meta.block_size
    try:
        for index, span in enumerate(spans):
            if isinstance(span, bytes):
                if span:
                    yield span
                continue
            blocks = span.blocks(block_size)
            for block, piece in span.split(block_size):
                chunks = await cached.block_or_none(block, blocks, piece, fallback)
                if chunks is None:  # declined: the rest of the answer from the store
                    rest = [Span(piece.start, span.end), *spans[index + 1 :]]
                    assert fallback is not None
                    cached.declined()
                    async for chunk in fallback(rest):
                        yield chunk
                    return
                for chunk in chunks:
                    yield chunk
    except PreconditionFailed:
        cached.version_gone()
        raise
