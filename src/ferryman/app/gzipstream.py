"""A gzip file read forward, with every member's trailer verified.

The archive code (archive_index.py) reads a .tar.gz through this instead of
gzip.GzipFile, because it must know *why* a stream stopped, and that is
what GzipFile's exceptions do not say apart (a CRC mismatch, a header that
is not gzip, trailing bytes after the last member are all BadGzipFile):

- NotGzip: the file does not start with the gzip magic: not a .tar.gz at all;
- GzipDamaged: zlib refused the data: a corrupt deflate stream, a bad
  header, or a trailer whose CRC-32 or length does not match what was
  decompressed. Bytes already read from such a stream cannot be trusted;
- GzipTruncated: the file ends before a member's trailer: nothing read was
  shown to be wrong, and nothing after the cut exists.

zlib does the checking: with wbits 31 it parses the gzip header, and only
reports the end of a member after the trailer's CRC-32 and ISIZE matched.
Members may be concatenated (RFC 1952 2.2); zero padding between or after
them is skipped, and bytes after the last member that are not a gzip
header are ignored, as `gzip -d` does ("trailing garbage ignored").

Blocking; forward only (a seek backwards would mean starting over).
Output is bounded per call (`chunk(limit)`), so a small input that
inflates enormously never lands in memory at once.
"""

from __future__ import annotations

import os
import zlib
from typing import IO

MAGIC = b"\x1f\x8b"
_GZIP = 31  # zlib wbits: a gzip wrapper, 32 KiB window, trailer checked
_READ = 64 * 1024  # compressed bytes read at a time


class NotGzip(Exception):
    """The file does not start with a gzip header."""


class GzipDamaged(Exception):
    """zlib refused the stream: corrupt data, or a trailer that does not match."""


class GzipTruncated(Exception):
    """The file ends before the trailer of its last member."""


class GzipStream:
    """Decompressed bytes of a gzip file, forward only; see the module docstring."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._inflate = zlib.decompressobj(_GZIP)
        self._input = b""  # compressed bytes read but not yet given to zlib
        self._started = False
        self.position = 0  # decompressed bytes handed out so far
        self.ended = False  # every member's trailer matched; nothing but padding follows
        self.members = 0  # members whose trailer matched

    def chunk(self, limit: int) -> bytes:
        """The next decompressed bytes: 1 to `limit` of them, or b"" at the end.

        Raises NotGzip, GzipDamaged or GzipTruncated (module docstring).
        """
        if not self._started:
            self._start()
        while not self.ended:
            inflate = self._inflate
            if inflate.eof:
                self._next_member(inflate.unused_data)
                continue
            data = inflate.unconsumed_tail
            if not data:
                data, self._input = self._input or self._raw.read(_READ), b""
                if not data:
                    raise GzipTruncated(
                        f"the gzip stream ends before its trailer (after {self.position} bytes)"
                    )
            try:
                out = inflate.decompress(data, limit)
            except zlib.error as exc:
                raise GzipDamaged(f"{exc} (after {self.position} bytes)") from None
            if out:
                self.position += len(out)
                return out
        return b""

    def read(self, size: int) -> bytes:
        """Exactly `size` bytes, fewer only at the end of the stream."""
        parts = []
        while size > 0:
            out = self.chunk(size)
            if not out:
                break
            parts.append(out)
            size -= len(out)
        return b"".join(parts)

    def skip(self, count: int) -> int:
        """Decompress and drop `count` bytes (fewer at the end); returns how many went."""
        target = self.position + count
        while self.position < target and self.chunk(min(target - self.position, 1024**2)):
            pass
        return count - (target - self.position)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Forward only: decompress up to `offset` (or the end, if it comes first)."""
        if whence == os.SEEK_CUR:
            offset += self.position
        elif whence != os.SEEK_SET:
            raise ValueError("a gzip stream has no known end to seek from")
        if offset < self.position:
            raise ValueError(f"cannot seek back from {self.position} to {offset} in a gzip stream")
        self.skip(offset - self.position)
        return self.position

    def tell(self) -> int:
        return self.position

    def _start(self) -> None:
        self._started = True
        head = self._read_at_least(len(MAGIC), b"")
        if head[: len(MAGIC)] != MAGIC:
            raise NotGzip("not a gzip file")
        self._input = head

    def _next_member(self, rest: bytes) -> None:
        """The member's trailer matched: what follows is another member, padding or the end."""
        self.members += 1
        while not (rest := rest.lstrip(b"\0")):
            rest = self._raw.read(_READ)
            if not rest:
                self.ended = True
                return
        rest = self._read_at_least(len(MAGIC), rest)
        if rest[: len(MAGIC)] != MAGIC:
            self.ended = True  # trailing bytes that are not gzip: ignored, as gzip -d does
            return
        self._inflate = zlib.decompressobj(_GZIP)
        self._input = rest

    def _read_at_least(self, count: int, data: bytes) -> bytes:
        while len(data) < count:
            more = self._raw.read(_READ)
            if not more:
                break
            data += more
        return data
