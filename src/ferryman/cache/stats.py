"""Counters of the block cache, shared by the filler and the workers' cache clients.

The filler counts what it does (misses, fills, upstream traffic, evictions);
each worker counts its own hits and misses, which the filler never sees (a
warm hit sends it no message). `snapshot()` is what the "stats" message and
the admin view report. Counters only grow; readers take differences.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class CacheStats:
    hits: int = 0  # bodies served from present blocks without asking the filler (workers)
    misses: int = 0  # opens or bodies that needed the filler (a HEAD, a new entry, a fetch)
    fills: int = 0  # blocks written (filler)
    bytes_fetched: int = 0  # body bytes received from the store (filler)
    upstream_requests: int = 0  # HEADs and ranged GETs sent to the store (filler)
    evictions: int = 0  # entries removed by the evictor (filler)
    evicted_bytes: int = 0
    bad_blocks: int = 0  # blocks that failed verification and were cleared (filler)
    version_changes: int = 0  # entries dropped because the object changed (filler)
    declined: int = 0  # entries and blocks not cached for want of room or a sound disk
    # (filler), answers or their rests streamed from the store instead (workers)

    def snapshot(self) -> dict[str, int]:
        return asdict(self)
