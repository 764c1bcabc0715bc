"""The content codings ferryman can apply on the fly, and how each one compresses.

gzip comes from the standard library (zlib); zstd from the `zstandard`
package and br from `brotli`, both runtime dependencies. A coding whose
library cannot be imported is left out of `AVAILABLE`, and so never
offered (the start logs which ones are missing).

Levels are the usual on-the-fly choices: fast enough to keep up with a
network, most of the gain. Compressors are fed fixed `PIECE`-sized inputs,
whatever sizes the source delivers, so the same bytes always code to the
same bytes (with the same library), which is what lets a coded answer carry
a strong ETag.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from types import ModuleType
from typing import Protocol

ORDER = ("zstd", "br", "gzip")  # the server's preference among codings a client wants equally
LEVELS = {"zstd": 3, "br": 4, "gzip": 6}
PIECE = 64 * 1024  # what each compressor call is given


class Coder(Protocol):
    """One coding of one body: feed pieces, then finish once."""

    def feed(self, data: bytes) -> bytes: ...
    def finish(self) -> bytes: ...


class _Gzip:
    __slots__ = ("_z",)

    def __init__(self) -> None:
        # wbits 31: the gzip wrapper, with mtime 0 in its header (the same bytes every time).
        self._z = zlib.compressobj(LEVELS["gzip"], zlib.DEFLATED, 31)

    def feed(self, data: bytes) -> bytes:
        return self._z.compress(data)

    def finish(self) -> bytes:
        return self._z.flush()


def _import(name: str) -> ModuleType | None:
    try:
        return __import__(name)
    except ImportError:
        return None


_zstd = _import("zstandard")
_brotli = _import("brotli")


class _Zstd:
    __slots__ = ("_z",)

    def __init__(self) -> None:
        assert _zstd is not None
        self._z = _zstd.ZstdCompressor(level=LEVELS["zstd"]).compressobj()

    def feed(self, data: bytes) -> bytes:
        return bytes(self._z.compress(data))

    def finish(self) -> bytes:
        return bytes(self._z.flush())


class _Brotli:
    __slots__ = ("_b",)

    def __init__(self) -> None:
        assert _brotli is not None
        self._b = _brotli.Compressor(quality=LEVELS["br"])

    def feed(self, data: bytes) -> bytes:
        return bytes(self._b.process(data))

    def finish(self) -> bytes:
        return bytes(self._b.finish())


_MAKERS: dict[str, Callable[[], Coder]] = {"gzip": _Gzip}
if _zstd is not None:
    _MAKERS["zstd"] = _Zstd
if _brotli is not None:
    _MAKERS["br"] = _Brotli

AVAILABLE = tuple(c for c in ORDER if c in _MAKERS)
MISSING = {"zstd": "zstandard", "br": "brotli"}  # the package each optional coding needs


def new_coder(coding: str) -> Coder:
    return _MAKERS[coding]()


class PieceCoder:
    """A coder fed in exact PIECE-sized inputs, whatever sizes come in."""

    __slots__ = ("_coder", "_held")

    def __init__(self, coding: str) -> None:
        self._coder = new_coder(coding)
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        held = self._held + data if self._held else data
        out: list[bytes] = []
        whole = len(held) - len(held) % PIECE
        for start in range(0, whole, PIECE):
            out.append(self._coder.feed(held[start : start + PIECE]))
        self._held = held[whole:]
        return b"".join(out)

    def finish(self) -> bytes:
        out = self._coder.feed(self._held) if self._held else b""
        self._held = b""
        return out + self._coder.finish()


def compress_whole(coding: str, data: bytes) -> bytes:
    """`data` coded in one go: the same bytes a stream of it would give."""
    coder = PieceCoder(coding)
    return coder.feed(data) + coder.finish()
