"""The trust floor: no check of a cache entry older than it counts (decisions/0036).

A server whose catalog is PostgreSQL learns of the other servers' writes
from notifications (notices.py) and drops its copy at once, so an entry
checked with the store stays good until a notification says otherwise. That
holds only while the filler listens: a notification sent while it does not
is lost. The floor is a Unix time, and an entry last checked before it is
checked with the store again on its next use, whatever --cache-revalidate
says:

* 0 (nothing forced): a SQLite catalog, or a listener that is listening
  since before every check; without a listener the floor stays 0;
* +inf while the listener is not listening: every use checks with the store;
* the moment listening resumed: what was checked before then is checked once
  more, since a change made meanwhile was never announced;
* now, after a notice too long to name its key: every entry is checked once.

The filler writes it; each worker reads it on every warm lookup. It lives in
CACHE_DIR/fleet.floor, a 16-byte file mapped by every process: the value and
its bitwise complement, so a reader that catches a write half done sees a
mismatch and reads again. The filler writes in place (never a new file), so
the workers' mappings stay the filler's across its restarts.

Who owns what: each process owns its `Floor`'s descriptor and mapping.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from pathlib import Path

FLOOR_NAME = "fleet.floor"
_LAYOUT = struct.Struct("<dQ")  # the floor, and the complement of its bits
_BITS = struct.Struct("<Q")
_SIZE = _LAYOUT.size
_READS = 100  # a torn read is retried; a writer is never this slow between two stores

UNTRUSTED = math.inf


class Floor:
    """The shared floor of one cache directory: `writable` in the filler, read elsewhere.

    A reader whose file does not exist yet (a worker started before the filler
    made it) trusts no check until it appears: it looks again on each read.
    """

    def __init__(self, cache_dir: str | os.PathLike[str], *, writable: bool = False) -> None:
        self.path = Path(cache_dir) / FLOOR_NAME
        self.writable = writable
        self._map: mmap.mmap | None = None
        if writable:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                if os.fstat(fd).st_size != _SIZE:
                    os.ftruncate(fd, _SIZE)
                self._map = mmap.mmap(fd, _SIZE)
            finally:
                os.close(fd)

    def value(self) -> float:
        """The floor now: a Unix time, 0.0, or UNTRUSTED."""
        mapped = self._map or self._open()
        if mapped is None:
            return UNTRUSTED
        for _ in range(_READS):
            value, check = _LAYOUT.unpack_from(mapped)
            if check == _complement(value):
                return float(value)
        return UNTRUSTED

    def set(self, value: float) -> None:
        """Write `value` (the filler only)."""
        assert self._map is not None and self.writable
        _LAYOUT.pack_into(self._map, 0, value, _complement(value))

    def _open(self) -> mmap.mmap | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            if os.fstat(fd).st_size < _SIZE:
                return None  # being made: the next read looks again
            self._map = mmap.mmap(fd, _SIZE, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        return self._map

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None


def _complement(value: float) -> int:
    bits: int = _BITS.unpack(struct.pack("<d", value))[0]
    return bits ^ 0xFFFF_FFFF_FFFF_FFFF


def trusted(checked: float, floor: float) -> bool:
    """Whether a check made at `checked` (Unix time) still counts under `floor`."""
    return checked >= floor
