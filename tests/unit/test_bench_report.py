"""The benchmark's merging of rounds: a round that broke is never silently dropped."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))  # bench modules import each other by plain name

from report import median_outcome, render_notes  # noqa: E402
from workloads import Outcome  # noqa: E402


def ok(rps: float, p99: float) -> Outcome:
    return Outcome("ok", {"rps": rps, "p99_ms": p99})


def test_a_round_that_broke_flags_the_result_and_keeps_its_note() -> None:
    merged = median_outcome([ok(100, 2), Outcome("error", note="wrk exited with 1"), ok(300, 4)])
    assert merged.status == "flagged"
    assert "wrk exited with 1" in merged.note
    assert merged.metrics == {"rps": 200, "p99_ms": 3}


def test_clean_rounds_give_ok_and_the_median_of_each_metric() -> None:
    merged = median_outcome([ok(100, 5), ok(300, 1), ok(200, 3)])
    assert merged.status == "ok"
    assert merged.note == ""
    assert merged.metrics == {"rps": 200, "p99_ms": 3}
    assert [r["metrics"]["rps"] for r in merged.details["rounds"]] == [100, 300, 200]


def test_a_single_round_is_returned_as_is() -> None:
    only = Outcome("error", note="server exited with -9 during the run")
    assert median_outcome([only]) is only


def test_the_notes_show_the_broken_round() -> None:
    merged = median_outcome([ok(100, 2), Outcome("failed to start", note="no log"), ok(300, 4)])
    doc = {
        "reference": "nginx",
        "results": [
            {
                "workload": "small",
                "server": "ferryman",
                "status": merged.status,
                "note": merged.note,
                "metrics": merged.metrics,
            }
        ],
    }
    notes = render_notes(doc)
    assert "ferryman, flagged in small" in notes
    assert "failed to start: no log" in notes
