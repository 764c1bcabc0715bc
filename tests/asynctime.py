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


class FakeLoop:
    """The clock of an event loop (time, call_at) that moves only when the test says:
    `advance` runs the callbacks that fall due, in time order, as a loop would."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[tuple[float, Any, list[bool]]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, at: float, callback: Any) -> Any:
        cancelled = [False]
        self.calls.append((at, callback, cancelled))

        class Handle:
            def cancel(self) -> None:
                cancelled[0] = True

        return Handle()

    def advance(self, seconds: float) -> None:
        """Run due callbacks in time order, up to now + seconds."""
        end = self.now + seconds
        while due := [c for c in self.calls if not c[2][0] and c[0] <= end]:
            call = min(due, key=lambda c: c[0])
            self.calls.remove(call)
            self.now = max(self.now, call[0])
            call[1]()
        self.now = end

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        raise context["exception"]
