"""When the filler's pacer runs the evictor: shared runs, limits, and the gap between runs."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from ferryman.cache.eviction import EvictionReport
from ferryman.cache.evictionpacing import EVICT_GAP, EvictionPacer
from ferryman.cache.stats import CacheStats
from tests.asynctime import Clock, run

MIB = 1 << 20


class FakeEvictor:
    """Counts its runs and reports the free space it is told; `gate` holds a run."""

    def __init__(self, *, free: int, max_size: int = 1 << 40, min_free: int = 0) -> None:
        self.max_size = max_size
        self.min_free = min_free
        self.free = free
        self.runs = 0
        self.started = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def run(self, reserve: int = 0) -> EvictionReport:
        self.runs += 1
        self.started.set()
        self.gate.wait(10)
        return EvictionReport(
            entries=0, total_bytes=0, free_bytes=self.free, evicted=0, evicted_bytes=0, skipped=0
        )


def pacer_of(evictor: FakeEvictor, clock: Clock) -> EvictionPacer:
    fake: Any = evictor
    return EvictionPacer(fake, CacheStats(), lambda: None, clock)


@run
async def test_a_run_whose_waiters_were_all_cancelled_does_not_stop_the_next() -> None:
    evictor = FakeEvictor(free=100 * MIB)
    pacer = pacer_of(evictor, Clock())
    evictor.gate.clear()
    waiter = asyncio.ensure_future(pacer.evict(0))
    await asyncio.to_thread(evictor.started.wait, 5)
    waiter.cancel()  # as Fill.retire cancels a fetch run waiting in make_room
    evictor.gate.set()
    await pacer.close()
    await pacer.evict(0)
    assert evictor.runs == 2


async def measured() -> tuple[Clock, FakeEvictor, EvictionPacer]:
    """A pacer whose first run found 10 MiB free, with 4 MiB to be kept free."""
    clock = Clock()
    evictor = FakeEvictor(free=10 * MIB, min_free=4 * MIB)
    pacer = pacer_of(evictor, clock)
    await pacer.evict(0)
    return clock, evictor, pacer


@run
async def test_make_room_runs_the_evictor_when_free_space_would_fall_under_min_free() -> None:
    clock, evictor, pacer = await measured()
    clock.now += EVICT_GAP
    pacer.wrote(5 * MIB)
    await pacer.make_room(MIB)  # 10 - 5 - 1 = 4 MiB left: still enough
    assert evictor.runs == 1
    await pacer.make_room(MIB + 1)  # one byte under min_free
    assert evictor.runs == 2


@run
async def test_make_room_does_not_run_the_evictor_again_within_the_gap() -> None:
    clock, evictor, pacer = await measured()
    clock.now += EVICT_GAP / 2
    await pacer.make_room(100 * MIB)  # over the limit, but the last run was just now
    assert evictor.runs == 1
    clock.now += EVICT_GAP / 2
    await pacer.make_room(100 * MIB)
    assert evictor.runs == 2
