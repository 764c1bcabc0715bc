"""The restart budget against a simple model: "more than R restarts within any T-second window"."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.supervisor.budget import RestartBudget

# Times and windows in whole milliseconds (ints), so that the model's arithmetic
# and the budget's agree exactly, even on the edge of a window.
gaps = st.lists(st.integers(0, 20_000), max_size=40).map(lambda ms: list(itertools.accumulate(ms)))
limits = st.integers(0, 6)
windows = st.integers(1, 30_000)


def any_window_exceeded(times: list[int], limit: int, window: int) -> bool:
    """Brute force: is there a window [a, a + T] holding more than R of the times?

    A window holding the most restarts can always be slid to start at one of them.
    """
    return any(sum(1 for t in times if a <= t <= a + window) > limit for a in times)


@given(gaps, limits, windows)
def test_the_first_refusal_is_the_first_overfull_window(
    times: list[int], limit: int, window: int
) -> None:
    budget = RestartBudget(limit, window)
    for i, now in enumerate(times):
        allowed = budget.record(now)
        assert allowed == (not any_window_exceeded(times[: i + 1], limit, window))
        if not allowed:
            return  # the arbiter gives up here


@given(gaps, limits, windows)
def test_each_answer_counts_the_window_ending_now(
    times: list[int], limit: int, window: int
) -> None:
    budget = RestartBudget(limit, window)
    for i, now in enumerate(times):
        recent = sum(1 for t in times[: i + 1] if now - t <= window)
        assert budget.record(now) == (recent <= limit)
        assert budget.recent(now) == recent


def test_defaults_allow_five_restarts_in_ten_seconds() -> None:
    budget = RestartBudget(5, 10.0)
    assert all(budget.record(t) for t in (0.0, 1.0, 2.0, 3.0, 4.0))
    assert not budget.record(9.0)


def test_a_restart_exactly_one_window_old_still_counts() -> None:
    budget = RestartBudget(1, 10.0)
    assert budget.record(0.0)
    assert not budget.record(10.0)
    budget = RestartBudget(1, 10.0)
    assert budget.record(0.0)
    assert budget.record(10.001)


def test_zero_restarts_means_the_first_crash_stops_the_server() -> None:
    assert not RestartBudget(0, 10.0).record(0.0)


def test_slow_crashes_never_exhaust_the_budget() -> None:
    budget = RestartBudget(2, 1.0)
    assert all(budget.record(t * 0.6) for t in range(100))


def test_time_going_backwards_and_bad_limits_are_refused() -> None:
    budget = RestartBudget(3, 10.0)
    budget.record(5.0)
    with pytest.raises(ValueError):
        budget.record(4.0)
    with pytest.raises(ValueError):
        RestartBudget(-1, 10.0)
    with pytest.raises(ValueError):
        RestartBudget(1, 0.0)
