"""Restart intensity, as OTP supervisors count it: pure bookkeeping, no clock of its own.

A supervisor may restart its children at most `max_restarts` times within
any `window` seconds. One restart more and it gives up, because a child
that keeps dying is not being helped by being restarted, and looping hides
the failure from whoever watches the service (systemd, an orchestrator, a
person). The check runs at each restart against the restarts of the last
`window` seconds, the window closed at both ends as in OTP's supervisor.erl:
a restart exactly `window` seconds old still counts.

Times are whatever monotonic clock the caller uses, in seconds; they must
not go backwards.
"""

from __future__ import annotations

from collections import deque


class RestartBudget:
    def __init__(self, max_restarts: int, window: float) -> None:
        if max_restarts < 0 or window <= 0:
            raise ValueError("max_restarts must be >= 0 and window > 0")
        self.max_restarts = max_restarts
        self.window = window
        self._recent: deque[float] = deque()  # restarts of the last `window` seconds, oldest first

    def record(self, now: float) -> bool:
        """Count a restart at `now`; False when it is one too many (give up)."""
        if self._recent and now < self._recent[-1]:
            raise ValueError("restart times must not go backwards")
        self._recent.append(now)
        self._forget(now)
        return len(self._recent) <= self.max_restarts

    def recent(self, now: float) -> int:
        """Restarts counted in the window that ends at `now`."""
        self._forget(now)
        return len(self._recent)

    def _forget(self, now: float) -> None:
        while self._recent and now - self._recent[0] > self.window:
            self._recent.popleft()
