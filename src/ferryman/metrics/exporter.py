"""ferryman's metrics, written where one scrape of any worker sees the whole server.

prometheus-client's multiprocess mode: each process (worker, cache filler,
arbiter) keeps its values in memory-mapped files of its own in the run's
metrics directory (metrics/rundir.py), and a scrape adds every process's
files up (metrics/scrape.py). A replaced worker's counters stay in its files,
so the server's totals never go backwards; its gauges are dropped when the
arbiter reaps it (mark_process_dead).

Nothing here runs per request: `flush_worker` and `flush_filler`, once a
second, move what the process counted in plain ints (metrics/tally.py,
stores/calls.py, the cache's CacheStats) into the metric values.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import values
from prometheus_client.metrics import Counter, Gauge, Histogram

from ferryman.metrics.rundir import DIRECTORY_ENV, RESTARTS, RESTARTS_HELP
from ferryman.metrics.tally import BUCKETS, Counts
from ferryman.stores.calls import CALLS

if TYPE_CHECKING:
    from ferryman.cache.filler import Filler
    from ferryman.cache.stats import CacheStats
    from ferryman.config import Config


def directory() -> str | None:
    """This run's metrics directory, when the arbiter made one (metrics are on)."""
    return os.environ.get(DIRECTORY_ENV) or None


def use_files() -> None:
    """Metric values made from now on live in this process's files of the directory.

    Said explicitly, whatever imported prometheus_client first: the library
    picks its value class from the environment at import time.
    """
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


class Metrics:
    """The metric families; only the ones a process writes get files of its own."""

    def __init__(self) -> None:
        use_files()
        self.requests = Counter("ferryman_requests", "Answers sent, by method and status.",
                                ["method", "code"], registry=None)  # fmt: skip
        self.response_bytes = Counter(
            "ferryman_response_bytes", "Body bytes of answers handed to the kernel.", registry=None
        )
        self.duration = Histogram(
            "ferryman_request_duration_seconds",
            "From a request's head read to its answer's last byte sent.",
            buckets=BUCKETS,
            registry=None,
        )
        self.connections = Gauge("ferryman_connections_open", "Client connections open.",
                                 multiprocess_mode="livesum", registry=None)  # fmt: skip
        self.store_requests = Counter(
            "ferryman_store_requests",
            "Requests sent to the object store, by S3 operation and outcome.",
            ["operation", "outcome"],
            registry=None,
        )
        self.cache_hits = Counter("ferryman_cache_hits",
                                  "Answers served from cached blocks without asking the filler.",
                                  registry=None)  # fmt: skip
        self.cache_misses = Counter(
            "ferryman_cache_misses", "Answers that needed the filler (a HEAD, an entry, a fetch).",
            registry=None)  # fmt: skip
        self.cache_fill_bytes = Counter("ferryman_cache_fill_bytes",
                                        "Bytes fetched from the store into the block cache.",
                                        registry=None)  # fmt: skip
        self.cache_size = Gauge("ferryman_cache_size_bytes",
                                "Bytes the block cache's entries take on disk (last measured).",
                                multiprocess_mode="livesum", registry=None)  # fmt: skip
        # The arbiter counts restarts, but makes its counter only at the first one
        # (metrics/rundir.py): this zero makes the family show from the start.
        self.worker_restarts = Counter(RESTARTS, RESTARTS_HELP, registry=None)
        self._cache_seen: dict[str, int] = {}

    def flush_requests(self, counts: Counts) -> None:
        for (method, status), n in counts.requests.items():
            self.requests.labels(method, str(status)).inc(n)
        if counts.bytes:
            self.response_bytes.inc(counts.bytes)
        if counts.requests:
            # The histogram's own observe() is per value; the counts are added to its
            # buckets (per bucket, not cumulative, as observe keeps them) and its sum.
            for value, n in zip(self.duration._buckets, counts.durations, strict=True):
                if n:
                    value.inc(n)
            self.duration._sum.inc(counts.duration_sum)

    def flush_store_calls(self) -> None:
        for (operation, outcome), n in CALLS.take().items():
            self.store_requests.labels(operation, outcome).inc(n)

    def flush_cache(self, stats: CacheStats, *, hits: bool, fills: bool) -> None:
        """The growth of the cache's counters since the last flush (they only grow)."""
        if hits:
            self._grow(self.cache_hits, "hits", stats.hits)
            self._grow(self.cache_misses, "misses", stats.misses)
        if fills:
            self._grow(self.cache_fill_bytes, "bytes_fetched", stats.bytes_fetched)

    def _grow(self, counter: Counter, name: str, now: int) -> None:
        grown = now - self._cache_seen.get(name, 0)
        if grown > 0:
            counter.inc(grown)
        self._cache_seen[name] = now


class WorkerMetrics:
    """A worker's flush: its answers, its connections, its store calls, its cache hits."""

    def __init__(self) -> None:
        self.metrics = Metrics()

    def flush(self, counts: Counts, connections: int, cache: CacheStats | None) -> None:
        metrics = self.metrics
        metrics.flush_requests(counts)
        metrics.connections.set(connections)
        metrics.flush_store_calls()
        if cache is not None:
            metrics.flush_cache(cache, hits=True, fills=False)


def filler_flush(config: Config) -> Callable[[Filler], None] | None:
    """What the cache filler calls once a second (cache/service.py), or None with
    metrics off."""
    if not config.metrics or directory() is None:
        return None
    metrics = FillerMetrics()
    return lambda filler: metrics.flush(filler.stats, filler.size())


class FillerMetrics:
    """The cache filler's flush: its store calls, the bytes it fetched, the cache's size."""

    def __init__(self) -> None:
        self.metrics = Metrics()

    def flush(self, stats: CacheStats, size: int | None) -> None:
        metrics = self.metrics
        metrics.flush_store_calls()
        metrics.flush_cache(stats, hits=False, fills=True)
        if size is not None:
            metrics.cache_size.set(size)
