"""Metrics: the request path's tally against a model, and what a scrape shows of a flush.

The exporter writes prometheus-client's multiprocess files; the tests read
them back the way /-/metrics does (metrics/scrape.py) and parse the text.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families

from ferryman.cache.stats import CacheStats
from ferryman.metrics import exporter, tally
from ferryman.metrics.rundir import DIRECTORY_ENV, make_run_dir
from ferryman.metrics.scrape import render
from ferryman.stores.base import NotFound, Unavailable
from ferryman.stores.calls import CALLS, outcome_of

METHOD = st.sampled_from(["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "BREW", "get", "PROPFIND"])
ANSWER = st.tuples(METHOD, st.sampled_from([200, 206, 304, 404, 500, 503]),
                   st.integers(0, 10**9), st.floats(0, 100, allow_nan=False))  # fmt: skip


def counted(answers: list[tuple[str, int, int, float]]) -> tally.Counts:
    """The tally of `answers`."""
    t = tally.RequestTally()
    for method, status, sent, duration in answers:
        t.count(method, status, sent, duration)
    return t.take()


@given(st.lists(ANSWER, max_size=60))
def test_the_tally_counts_what_a_model_counts(answers: list[tuple[str, int, int, float]]) -> None:
    counts = counted(answers)
    known = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "POST", "PATCH"}
    model = Counter((m if m in known else "other", s) for m, s, _, _ in answers)
    assert counts.requests == dict(model)
    assert counts.bytes == sum(a[2] for a in answers)
    # Bucket i holds the durations above bound i-1 and up to bound i; the last the rest.
    bounds = [*tally.BUCKETS, math.inf]
    for i, bound in enumerate(bounds):
        low = bounds[i - 1] if i else -math.inf
        assert counts.durations[i] == sum(1 for a in answers if low < a[3] <= bound)
    assert counts.duration_sum == pytest.approx(sum(a[3] for a in answers))


@given(st.text(max_size=20))
def test_a_method_label_is_one_of_a_few(method: str) -> None:
    assert tally.method_label(method) in tally.METHODS | {"other"}


def test_take_starts_again_from_zero() -> None:
    t = tally.RequestTally()
    t.count("GET", 200, 10, 0.0)
    assert t.take().answers == 1
    assert t.take().answers == 0


def test_store_outcomes_are_named_by_kind() -> None:
    assert outcome_of(None) == "ok"
    assert outcome_of(NotFound("x")) == "not_found"
    assert outcome_of(Unavailable("x")) == "unavailable"


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A metrics directory this test's values go to; the library's value class restored."""
    run = make_run_dir(tmp_path / "state", os.getpid())
    monkeypatch.setenv(DIRECTORY_ENV, str(run))
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    return run


def scraped(run: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = render(str(run), None).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@settings(max_examples=10, deadline=None)
@given(batches=st.lists(st.lists(ANSWER, max_size=30), min_size=1, max_size=4))
def test_flushed_tallies_add_up_in_a_scrape(
    batches: list[list[tuple[str, int, int, float]]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        run = make_run_dir(tmp_path_factory.mktemp("state"), os.getpid())
        monkeypatch.setenv(DIRECTORY_ENV, str(run))
        monkeypatch.setattr(values, "ValueClass", values.ValueClass)
        metrics = exporter.WorkerMetrics()
        for batch in batches:
            metrics.flush(counted(batch), 3, None)
        samples = scraped(run)
    every = [a for batch in batches for a in batch]
    known = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "POST", "PATCH"}
    model = Counter((m if m in known else "other", s) for m, s, _, _ in every)
    for (method, status), n in model.items():
        key = ("ferryman_requests_total", (("code", str(status)), ("method", method)))
        assert samples[key] == n
    requests = {k: v for k, v in samples.items() if k[0] == "ferryman_requests_total"}
    assert sum(requests.values()) == len(every)
    assert samples[("ferryman_response_bytes_total", ())] == sum(a[2] for a in every)
    assert samples[("ferryman_request_duration_seconds_count", ())] == len(every)
    top = ("ferryman_request_duration_seconds_bucket", (("le", "+Inf"),))
    assert samples[top] == len(every)
    le_1 = ("ferryman_request_duration_seconds_bucket", (("le", "1.0"),))
    assert samples[le_1] == sum(1 for a in every if a[3] <= 1.0)  # cumulative, as Prometheus
    assert samples[("ferryman_connections_open", ())] == 3


def test_cache_counters_add_only_their_growth(run_dir: Path) -> None:
    metrics = exporter.WorkerMetrics()
    stats = CacheStats(hits=5, misses=2)
    empty = tally.Counts()
    metrics.flush(empty, 0, stats)
    stats.hits += 3
    metrics.flush(empty, 0, stats)
    metrics.flush(empty, 0, stats)  # nothing new: nothing added
    samples = scraped(run_dir)
    assert samples[("ferryman_cache_hits_total", ())] == 8
    assert samples[("ferryman_cache_misses_total", ())] == 2


def test_store_calls_are_flushed_by_operation_and_outcome(run_dir: Path) -> None:
    CALLS.take()
    CALLS.count("head_object", None)
    CALLS.count("head_object", NotFound("k"))
    CALLS.count("head_object", NotFound("k"))
    exporter.WorkerMetrics().flush(tally.Counts(), 0, None)
    samples = scraped(run_dir)
    key = (
        "ferryman_store_requests_total",
        (("operation", "head_object"), ("outcome", "not_found")),
    )
    assert samples[key] == 2
    assert CALLS.take() == {}


def test_a_dead_process_keeps_its_counters_and_loses_its_gauges(run_dir: Path) -> None:
    from prometheus_client.multiprocess import mark_process_dead

    metrics = exporter.WorkerMetrics()
    counts = counted([("GET", 200, 0, 0.001)] * 7)
    metrics.flush(counts, 4, None)
    mark_process_dead(os.getpid(), str(run_dir))  # type: ignore[no-untyped-call]
    samples = scraped(run_dir)
    assert samples[("ferryman_requests_total", (("code", "200"), ("method", "GET")))] == 7
    assert ("ferryman_connections_open", ()) not in samples


def test_a_new_run_starts_empty_and_dead_runs_are_removed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    run = make_run_dir(state, os.getpid())
    (run / "counter_1.db").write_bytes(b"x")
    dead = state / "metrics" / "999999999"  # no such process
    dead.mkdir()
    again = make_run_dir(state, os.getpid())
    assert again == run and list(again.iterdir()) == []
    assert not dead.exists()
