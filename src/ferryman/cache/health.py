"""Whether the cache disk can take writes, and the error that sends a read to the store.

A full, read-only or failing cache disk must never cost a read
(decisions/0018): the filler stops filling, every answer that needed a fill
streams from the store, and the condition is kept here, in `CacheHealth`,
for the log and for whoever asks (the filler's `health` message).

`CacheHealth` is a small state machine: `fault(exc)` names the condition an
OSError shows and records when it began; `clear()` ends it. Each change is
logged once, never once per request. The filler probes a degraded disk every
second (entry.py: CacheDir.probe) and clears the state when the probe passes.

`CacheDeclined` is what the filler answers when it will not cache something
(its disk is degraded, or --cache-max-size leaves no room beside the entries
in use). It is an Unavailable, so code that does not know it fails safe; the
worker that gets it answers from the store (app/remote.py, cache/cached.py).
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable

from ferryman.stores.base import Unavailable

log = logging.getLogger("ferryman.cache")

NO_SPACE = "no space left on the cache disk"
READ_ONLY = "the cache disk is read-only"
IO_ERROR = "the cache disk fails to read or write (I/O error)"
GONE = "the cache directory is gone"

_CONDITIONS = {
    errno.ENOSPC: NO_SPACE,
    errno.EDQUOT: NO_SPACE,
    errno.EROFS: READ_ONLY,
    errno.EIO: IO_ERROR,
    errno.ENOENT: GONE,
    errno.ENOTDIR: GONE,
    errno.ESTALE: GONE,
}


class CacheDeclined(Unavailable):
    """The cache will not hold this (its disk is degraded, or it has no room): use the store."""


def condition_of(exc: OSError) -> str:
    """The condition of the cache disk that `exc` shows, in words an operator reads."""
    known = _CONDITIONS.get(exc.errno or 0)
    if known is not None:
        return known
    return f"the cache disk fails ({exc.strerror or exc})"


class CacheHealth:
    """Healthy, or degraded by one condition since a given time. Belongs to one event loop.

    `condition` is None while healthy; `since` is the Unix time the current
    condition began. `describe()` is the one-line state a health endpoint shows.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.condition: str | None = None
        self.since: float | None = None

    @property
    def degraded(self) -> bool:
        return self.condition is not None

    def fault(self, exc: OSError) -> CacheDeclined:
        """Record what `exc` shows (logged if it is new); the error to answer with."""
        condition = condition_of(exc)
        if condition != self.condition:
            self.condition, self.since = condition, self._clock()
            log.warning("cache: degraded: %s (%s); reads are answered from the store until "
                        "it clears", condition, exc)  # fmt: skip
        return self.declined()

    def clear(self) -> None:
        """The disk takes writes again (logged once, with how long it lasted)."""
        if self.condition is None:
            return
        lasted = self._clock() - (self.since or 0)
        log.warning("cache: usable again after %.0f s of: %s", lasted, self.condition)
        self.condition = self.since = None

    def declined(self) -> CacheDeclined:
        """A new CacheDeclined naming the current condition (one per answer, never kept)."""
        return CacheDeclined(f"the cache is not filling: {self.condition or 'no room'}")

    def describe(self) -> str:
        """ "ok", or "degraded: <condition> since <UTC time>"."""
        if self.condition is None or self.since is None:
            return "ok"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since))
        return f"degraded: {self.condition} since {stamp}"


def no_room() -> CacheDeclined:
    """The entries in use leave no room under --cache-max-size (or above --cache-min-free)."""
    return CacheDeclined("the cache is not filling: no room beside the entries in use")
