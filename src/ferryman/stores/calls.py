"""Requests this process sent to object stores, by operation and outcome, for /-/metrics.

Counted in a plain dict (S3Store._call adds one per request) and taken by the
process's once-a-second flush (metrics/exporter.py). The labels are bounded:
an operation is one of the few S3 calls ferryman makes, an outcome "ok" or a
StoreError kind.
"""

from __future__ import annotations

from ferryman.stores.base import StoreError


def outcome_of(error: StoreError | None) -> str:
    """ "ok", or the kind of failure: "not_found", "unavailable", "throttled"..."""
    if error is None:
        return "ok"
    name = type(error).__name__
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


class StoreCalls:
    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}

    def count(self, operation: str, error: StoreError | None) -> None:
        key = (operation, outcome_of(error))
        self._counts[key] = self._counts.get(key, 0) + 1

    def take(self) -> dict[tuple[str, str], int]:
        counts, self._counts = self._counts, {}
        return counts


CALLS = StoreCalls()  # this process's: every S3Store of it counts here
