"""The room the cache may still take: --cache-max-size as a bound, --cache-min-free as a floor.

Pure bookkeeping, owned by the filler's loop (evictionpacing.py drives it;
decisions/0018 has the why). What counts against --cache-max-size is what
the evictor's scan measures: every entry's files (data as allocated, meta,
map, used) and its directory, in allocated bytes (st_blocks * 512).

Between scans the filler cannot measure, so it charges: before a block is
written, room for every filesystem block its bytes touch (`block_charge`);
before an entry is made, a block for its directory plus its meta and map
files (`entry_charge`). A charge is *reserved* first; `reserve` refuses
what would pass a limit, so concurrent fills cannot pass it together. A
reservation is *committed* once its write was attempted (written or not:
a failed write may have allocated) and *released* only when nothing was
written. `held` is therefore never below what the entries take:

    held = last scan - what it evicted + everything committed since the scan began

(a write that ends during a scan may be counted twice; dropped entries are
counted until the next scan: both err on the safe side).
"""

from __future__ import annotations

from dataclasses import dataclass

from ferryman.http.spans import Span

DEFAULT_UNIT = 4096  # bytes per filesystem block until a scan measured the real one
META_SLACK = 64  # bytes a sealed meta adds to its JSON (nonce, tag), rounded up


def _blocks(length: int, unit: int) -> int:
    return -(-length // unit)


def block_charge(index: int, slot: int, length: int, unit: int) -> int:
    """Bytes block `index` (`length` bytes at index * slot of `data`) may allocate:
    every filesystem unit its bytes touch."""
    start = index * slot
    return len(Span(start, start + length).blocks(unit)) * unit


def entry_charge(meta_length: int, block_count: int, unit: int) -> int:
    """Bytes a new entry may allocate before its first block: directory, meta, map."""
    return unit * (1 + _blocks(meta_length + META_SLACK, unit) + _blocks(block_count, unit))


@dataclass(frozen=True, slots=True)
class Scan:
    """What an eviction run measured, and where the commit count stood when it began."""

    total_bytes: int  # entries' allocated bytes, less what the run evicted
    free_bytes: int  # free space on the filesystem, plus what the run evicted
    unit: int  # the filesystem's allocation unit
    committed_at_start: int


class Room:
    """Reservations against --cache-max-size and --cache-min-free. Unbounded until measured."""

    def __init__(self, max_size: int, min_free: int) -> None:
        self.max_size = max_size
        self.min_free = min_free
        self.unit = DEFAULT_UNIT
        self.reserved = 0  # bytes promised to writes in flight
        self.committed = 0  # bytes committed since the filler started (only grows)
        self._scanned_total: int | None = None
        self._scanned_free = 0
        self._committed_at_scan = 0

    @property
    def measured(self) -> bool:
        return self._scanned_total is not None

    @property
    def held(self) -> int:
        """Bytes the entries take at most now (0 before the first scan)."""
        return (self._scanned_total or 0) + self.committed - self._committed_at_scan

    def free(self) -> int:
        """Free bytes on the filesystem at least (as of the last scan, less what was written)."""
        return self._scanned_free - (self.committed - self._committed_at_scan)

    def fits(self, size: int) -> bool:
        """`size` more bytes stay within both limits, beside what is reserved."""
        if not self.measured:
            return True
        return (
            self.held + self.reserved + size <= self.max_size
            and self.free() - self.reserved - size >= self.min_free
        )

    def shortfall(self, size: int) -> int:
        """How many bytes an eviction must free for `size` more (0 if it fits)."""
        if not self.measured:
            return 0
        over = self.held + self.reserved + size - self.max_size
        under = self.min_free - (self.free() - self.reserved - size)
        return max(0, over, under)

    def reserve(self, size: int) -> bool:
        """Promise `size` bytes to a write if they fit; False (nothing promised) if not."""
        if not self.fits(size):
            return False
        self.reserved += size
        return True

    def commit(self, size: int) -> None:
        """A reserved write was attempted: its bytes count as held from now on."""
        self.reserved -= size
        self.committed += size

    def release(self, size: int) -> None:
        """A reserved write was abandoned before it began."""
        self.reserved -= size

    def scan_started(self) -> int:
        """Mark the start of a scan: the commit count it must add to what it measures."""
        return self.committed

    def scanned(self, scan: Scan) -> None:
        self._scanned_total = scan.total_bytes
        self._scanned_free = scan.free_bytes
        self._committed_at_scan = scan.committed_at_start
        self.unit = scan.unit or DEFAULT_UNIT
