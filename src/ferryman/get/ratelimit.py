"""--limit-rate: the bytes per second of all a download's connections together.

Each read books its bytes on one schedule shared by the connections: the
schedule moves on by n / rate seconds per n bytes, and a reader whose
bytes are booked ahead of the clock sleeps until then. A burst of at most
one second is allowed after an idle spell, not more.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimit:
    def __init__(
        self,
        rate: int,
        sleep: Callable[[float], object],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self._sleep = sleep  # an Event's wait: a stopping download does not sleep on
        self._clock = clock
        self._lock = threading.Lock()
        self._booked = clock()

    def take(self, nbytes: int) -> None:
        with self._lock:
            now = self._clock()
            self._booked = max(self._booked, now - 1.0) + nbytes / self.rate
            ahead = self._booked - now
        if ahead > 0:
            self._sleep(ahead)
