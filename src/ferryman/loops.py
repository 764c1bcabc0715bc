"""Which event loop a worker or the cache filler runs: --loop auto|uvloop|asyncio."""

from __future__ import annotations

import asyncio

from ferryman.errors import ConfigError


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """uvloop when installed ('auto') or asked for ('uvloop'), else asyncio's own."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ConfigError("--loop uvloop: uvloop is not installed") from None
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()
