"""When a failed request is tried again, and after how long (pure).

Retried: network errors (refused, reset, cut short, timed out) and the
answers that say "later" (408, 429 and every 5xx). Never retried: any
other 4xx (the request itself is wrong: a missing file, a refused token).
The wait doubles with each failure in a row, with jitter (half of it
random, so many clients cut off together do not come back together), up to
MAX_BACKOFF; a Retry-After the server sent is honoured instead, up to
MAX_RETRY_AFTER (a longer one ends the download: waiting an hour is for the
user to decide). A failure after some bytes arrived starts the count again:
`--retries` is how many failures in a row, with nothing fetched between
them, a segment tolerates.
"""

from __future__ import annotations

import random

from ferryman.http.dates import parse_http_date

BASE_BACKOFF = 0.25  # seconds before the first retry (before jitter)
MAX_BACKOFF = 30.0
MAX_RETRY_AFTER = 600.0


def retryable_status(status: int) -> bool:
    return status in (408, 429) or 500 <= status <= 599


def backoff(failures: int, rng: random.Random) -> float:
    """Seconds to wait after `failures` (1, 2, ...) failures in a row: between half and all
    of BASE_BACKOFF * 2 ** (failures - 1), capped at MAX_BACKOFF."""
    ceiling = min(MAX_BACKOFF, BASE_BACKOFF * 2.0 ** min(max(failures - 1, 0), 30))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds a Retry-After asks for (delay-seconds or an HTTP-date); None if absent or
    unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit() and text.isascii():
        return float(int(text))
    date = parse_http_date(text)
    if date is None:
        return None
    return max(0.0, date - now)


class RetryBudget:
    """One segment's failures in a row, and the wait before its next try."""

    def __init__(self, retries: int, rng: random.Random) -> None:
        self.retries = retries
        self.failures = 0
        self.rng = rng

    def wait(self, progressed: bool, asked: float | None) -> float | None:
        """Seconds to wait before trying again, or None to give up.

        `progressed`: bytes arrived since the last failure (the count starts
        again); `asked`: the server's Retry-After, in seconds.
        """
        self.failures = 1 if progressed else self.failures + 1
        if self.failures > self.retries:
            return None
        if asked is not None:
            return asked if asked <= MAX_RETRY_AFTER else None
        return backoff(self.failures, self.rng)
