"""How much memory repeated calls leave behind, as tracemalloc sees it."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable


def growth(each: Callable[[], None], allocated_in: str, times: int = 100_000) -> int:
    """Bytes still held after `times` calls of `each` (after a warm-up of 1,000), counting
    only what was allocated from the file `allocated_in` (the caller's `__file__`): another
    thread of the test process (a pool's worker, the logger) may allocate meanwhile."""
    for _ in range(1000):
        each()
    here = [tracemalloc.Filter(True, allocated_in)]
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot().filter_traces(here)
        for _ in range(times):
            each()
        after = tracemalloc.take_snapshot().filter_traces(here)
    finally:
        tracemalloc.stop()
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))
