"""For tests of async code that reads a clock: a clock the test moves, and a
runner that fails a test hung for 30 s instead of hanging the suite."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

HANG_LIMIT = 30.0  # seconds


def run(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """A coroutine test as a plain one, on a fresh event loop."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), HANG_LIMIT))

    return wrapper


class Clock:
    """Wall-clock seconds that move only when the test sets `now`."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now
