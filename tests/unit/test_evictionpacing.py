"""When the filler's pacer runs the evictor, and what it lets writes reserve."""

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
    """Counts its runs, reports what it is told, and frees `frees` bytes per run
    (of `held`); `gate` holds a run."""

    def __init__(
        self, *, free: int, max_size: int = 1 << 40, min_free: int = 0, held: int = 0
    ) -> None:
        self.max_size = max_size
        self.min_free = min_free
        self.free = free
        self.held = held
        self.frees = 0
        self.runs = 0
        self.reserves: list[int] = []
        self.started = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def run(self, reserve: int = 0) -> EvictionReport:
        self.runs += 1
        self.reserves.append(reserve)
        self.started.set()
        self.gate.wait(10)
        freed = min(self.frees, self.held)
        report = EvictionReport(
            entries=0, total_bytes=self.held, free_bytes=self.free, evicted=1 if freed else 0,
            evicted_bytes=freed, skipped=0, unit=4096,
        )  # fmt: skip
        self.held -= freed
        self.free += freed
        return report


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
    waiter.cancel()  # as Fill.retire cancels a fetch run waiting in reserve
    evictor.gate.set()
    await pacer.close()
    await pacer.evict(0)
    assert evictor.runs == 2


async def measured(**limits: int) -> tuple[Clock, FakeEvictor, EvictionPacer]:
    """A pacer whose first run measured the cache."""
    clock = Clock()
    evictor = FakeEvictor(**limits)
    pacer = pacer_of(evictor, clock)
    await pacer.evict(0)
    return clock, evictor, pacer


@run
async def test_a_reservation_that_fits_needs_no_run() -> None:
    _, evictor, pacer = await measured(free=10 * MIB, min_free=4 * MIB)
    assert await pacer.reserve(5 * MIB)
    pacer.commit(5 * MIB)
    assert await pacer.reserve(MIB)  # 10 - 5 - 1 = 4 MiB left: still enough
    assert evictor.runs == 1


@run
async def test_a_reservation_over_a_limit_runs_the_evictor_and_gets_room_it_freed() -> None:
    _, evictor, pacer = await measured(free=1 << 40, max_size=10 * MIB, held=9 * MIB)
    evictor.frees = 3 * MIB
    assert await pacer.reserve(2 * MIB)
    assert evictor.runs == 2
    # The run was asked for the write's need and headroom beside what is reserved.
    assert evictor.reserves[-1] == 2 * MIB + 10 * MIB // 16


@run
async def test_when_entries_in_use_leave_no_room_writes_are_refused_without_a_run_per_write() -> (
    None
):
    clock, evictor, pacer = await measured(free=1 << 40, max_size=10 * MIB, held=9 * MIB)
    assert not await pacer.reserve(2 * MIB)  # the run freed nothing: all in use
    assert evictor.runs == 2
    for _ in range(5):
        assert not await pacer.reserve(2 * MIB)
    assert evictor.runs == 2  # refused at once within the gap
    assert await pacer.reserve(MIB)  # what still fits is granted
    clock.now += EVICT_GAP
    evictor.frees = 4 * MIB
    assert await pacer.reserve(2 * MIB)  # after the gap a run is tried again
    assert evictor.runs == 3


@run
async def test_concurrent_reservations_cannot_pass_the_bound_together() -> None:
    _, _, pacer = await measured(free=1 << 40, max_size=10 * MIB, held=2 * MIB)
    granted = await asyncio.gather(*(pacer.reserve(MIB) for _ in range(20)))
    assert sum(granted) == 8  # 2 held + 8 reserved = the bound
    for _ in range(8):
        pacer.commit(MIB)
    assert not await pacer.reserve(1)
    pacer.release(0)
    assert pacer.room is not None and pacer.room.held == 10 * MIB
