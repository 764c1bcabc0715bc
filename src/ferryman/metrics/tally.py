"""The request path's counts, in plain ints: one dict update and a few additions per answer.

A worker counts each answer here and, once a second, hands what it counted to
the exporter (metrics/exporter.py), which writes it where /-/metrics reads it:
no call into the metrics library per request. Labels are bounded: a method
ferryman does not know is counted as "other", and a status is one of the few
hundred numbers HTTP has.
"""

from __future__ import annotations

from typing import Final

# The methods a label may name; any other is "other" (a client chooses the method).
# Final: the compiled request path reads them as constants, not module attributes.
LABELS: Final = ("GET", "HEAD", "PUT", "DELETE", "OPTIONS", "POST", "PATCH", "other")
METHODS: Final = frozenset(LABELS[:-1])
OTHER: Final = "other"
_INDEX: Final = {method: i for i, method in enumerate(LABELS[:-1])}
_OTHER_INDEX: Final = 7
_SPREAD: Final = 8  # a key is status * _SPREAD + the method's index: no tuple per answer
# Upper bounds (seconds) of the duration histogram; one more bucket holds the rest (+Inf).
BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
           10.0, 30.0, 60.0)  # fmt: skip


def method_label(method: str) -> str:
    return method if method in METHODS else OTHER


class Counts:
    """What one period counted."""

    __slots__ = ("bytes", "duration_sum", "durations", "keyed")

    def __init__(self) -> None:
        self.keyed: dict[int, int] = {}  # status * _SPREAD + method index -> answers
        self.bytes = 0
        self.durations = [0] * (len(BUCKETS) + 1)  # per bucket, not cumulative
        self.duration_sum = 0.0

    @property
    def requests(self) -> dict[tuple[str, int], int]:
        """Answers by (method label, status)."""
        return {(LABELS[key % _SPREAD], key // _SPREAD): n for key, n in self.keyed.items()}

    @property
    def answers(self) -> int:
        return sum(self.keyed.values())


class RequestTally:
    """The counts of the answers since the last `take()`."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts = Counts()

    def count(self, method: str, status: int, sent: int, duration: float) -> None:
        """One answer: `sent` body bytes, `duration` seconds from its head to its end."""
        counts = self._counts
        key = status * _SPREAD + _INDEX.get(method, _OTHER_INDEX)
        keyed = counts.keyed
        keyed[key] = keyed.get(key, 0) + 1
        counts.bytes += sent
        # Bucket i holds durations up to BUCKETS[i], the last the rest. A loop from the
        # smallest: most answers stop at the first bound, and compiled it costs less
        # than a call to bisect.
        index = 0
        for bound in BUCKETS:
            if duration <= bound:
                break
            index += 1
        counts.durations[index] += 1
        counts.duration_sum += duration

    def take(self) -> Counts:
        """What was counted since the last take; counting starts again from zero."""
        counts, self._counts = self._counts, Counts()
        return counts
