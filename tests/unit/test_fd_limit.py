"""The worker's descriptor budget: connections, their transfers, and kept files."""

from __future__ import annotations

import resource

import pytest

from ferryman.server import worker


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Soft limit 512, hard 2,000; returns the soft limits the worker asked for."""
    asked: list[tuple[int, int]] = []
    state = {"soft": 512}
    monkeypatch.setattr(resource, "getrlimit", lambda which: (state["soft"], 2000))

    def setrlimit(which: int, value: tuple[int, int]) -> None:
        asked.append(value)
        state["soft"] = value[0]

    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    return asked


def test_kept_files_come_out_of_the_connections_budget(limits: list[tuple[int, int]]) -> None:
    without = worker.raise_fd_limit(10_000, kept_files=0)
    assert limits == [(2000, 2000)]  # as high as the hard limit allows
    assert worker.raise_fd_limit(10_000, kept_files=256) == without - 256


def test_enough_descriptors_leave_max_connections_alone(limits: list[tuple[int, int]]) -> None:
    # The 1,024 a big server keeps back for transfers must not starve a small
    # one: 100 connections need at most 300 + 64 + 256 (it used to get 1).
    assert worker.raise_fd_limit(100, kept_files=256) == 100
    assert limits == [(100 * 3 + 64 + 256, 2000)]  # the kept files are asked for too
