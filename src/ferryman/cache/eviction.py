"""Which cache entries go, and making them go.

`choose_victims` is pure: given every entry's size, last use and in-use
state, it picks what to evict. First every unused entry older than
--cache-max-age; then least recently used entries while the cache holds
more than --cache-max-size or the filesystem has less than --cache-min-free
free. `reserve` is room fills are about to take: it counts against both
limits. Entries in use count towards the totals but are never chosen; when
they leave no room, the filler declines to fill (room.py, evictionpacing.py)
rather than pass the limit.

`Evictor` applies it to a CacheDir. It runs in the filler (the only writer),
in a thread: it scans, stats the filesystem, and drops each victim with
CacheDir.drop_if_unused, which skips an entry a reader locked since the scan.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ferryman.cache.entry import CacheDir, EntryUsage

log = logging.getLogger("ferryman.cache")


def choose_victims(
    entries: Sequence[EntryUsage],
    *,
    now: float,
    max_age: float,
    max_size: int,
    free_bytes: int,
    min_free: int,
    reserve: int = 0,
) -> list[EntryUsage]:
    """The entries to evict, expired ones first, then least recently used first."""
    idle = [e for e in entries if not e.in_use]
    expired = sorted(
        (e for e in idle if now - e.last_used > max_age), key=lambda e: (e.last_used, e.id)
    )
    rest = sorted(
        (e for e in idle if now - e.last_used <= max_age), key=lambda e: (e.last_used, e.id)
    )
    total = sum(e.size_bytes for e in entries)
    victims = list(expired)
    evicted = sum(e.size_bytes for e in expired)
    for entry in rest:
        if total - evicted + reserve <= max_size and free_bytes + evicted >= min_free + reserve:
            break
        victims.append(entry)
        evicted += entry.size_bytes
    return victims


@dataclass(frozen=True)
class EvictionReport:
    """What one run found and did."""

    entries: int  # entries scanned
    total_bytes: int  # their allocated size before the run
    free_bytes: int  # free space on the cache's filesystem before the run
    evicted: int  # entries removed
    evicted_bytes: int
    skipped: int  # victims in use, used again or gone by the time they were to go
    unit: int = 4096  # the filesystem's allocation unit (statvfs f_frsize)


class Evictor:
    """Keeps a CacheDir within its age, size and free-space limits. Blocking."""

    def __init__(
        self,
        cache: CacheDir,
        *,
        max_size: int,
        max_age: float,
        min_free: int,
        statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`statvfs` and `clock` are os.statvfs and time.time; tests pass their own."""
        self.cache = cache
        self.max_size = max_size
        self.max_age = max_age
        self.min_free = min_free
        self._statvfs = statvfs
        self._clock = clock

    def free_bytes(self) -> int:
        """Space on the cache's filesystem that an unprivileged writer may still use."""
        return self._space()[0]

    def _space(self) -> tuple[int, int]:
        """(free bytes, allocation unit) of the cache's filesystem."""
        st = self._statvfs(str(self.cache.path))
        return st.f_bavail * st.f_frsize, st.f_frsize

    def run(self, reserve: int = 0) -> EvictionReport:
        """Evict what the limits require, leaving room for `reserve` more bytes."""
        entries = list(self.cache.entries())
        free, unit = self._space()
        victims = choose_victims(
            entries,
            now=self._clock(),
            max_age=self.max_age,
            max_size=self.max_size,
            free_bytes=free,
            min_free=self.min_free,
            reserve=reserve,
        )
        evicted = evicted_bytes = skipped = 0
        for victim in victims:
            if self.cache.drop_if_unused(victim):
                evicted += 1
                evicted_bytes += victim.size_bytes
            else:
                skipped += 1
        report = EvictionReport(
            entries=len(entries),
            total_bytes=sum(e.size_bytes for e in entries),
            free_bytes=free,
            evicted=evicted,
            evicted_bytes=evicted_bytes,
            skipped=skipped,
            unit=unit,
        )
        if evicted or skipped:
            log.info(
                "cache: evicted %d entries (%d bytes), kept %d used since the scan",
                evicted,
                evicted_bytes,
                skipped,
            )
        return report
