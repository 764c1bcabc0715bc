"""The benchmark's results: a round that broke is never silently dropped, and a ratio
involving a client-bound figure is never reported as a result."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.benchpath import BENCH_DIR

assert BENCH_DIR.is_dir()  # bench/ is on sys.path: its modules by plain name

from clientload import CLIENT_BOUND, ClientCpu  # noqa: E402
from measure import Measured, measured_outcome  # noqa: E402
from outcome import Metric, Outcome  # noqa: E402
from report import (  # noqa: E402
    build_results,
    format_cell,
    median_outcome,
    ratio,
    ratios_to_reference,
    render_notes,
)
from wrkrun import WrkResult  # noqa: E402


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


# ------------------------------------------------- client-bound figures ----


def bound(rps: float, *keys: str) -> Outcome:
    return Outcome("ok", {"rps": rps, "cpu_s_per_gb": 0.2}, client_bound=list(keys))


def test_a_client_bound_figure_gives_no_ratio() -> None:
    ratios = ratios_to_reference(
        {"nginx": bound(50_000), "ferryman": bound(90_000, "rps")}, "nginx"
    )
    assert ratios["ferryman"]["rps"] == CLIENT_BOUND
    assert ratios["ferryman"]["cpu_s_per_gb"] == 1.0  # a cost, not capped by the client
    assert ratios["nginx"]["rps"] == 1.0


def test_a_client_bound_reference_gives_no_ratio_to_anyone() -> None:
    ratios = ratios_to_reference(
        {"nginx": bound(95_000, "rps"), "ferryman": bound(40_000), "aiohttp": bound(5_000)},
        "nginx",
    )
    assert {name: r["rps"] for name, r in ratios.items()} == {
        "nginx": CLIENT_BOUND,
        "ferryman": CLIENT_BOUND,
        "aiohttp": CLIENT_BOUND,
    }


@given(
    st.floats(1, 1e6),
    st.floats(1, 1e6),
    st.booleans(),
    st.booleans(),
)
def test_a_ratio_is_a_number_exactly_when_neither_figure_is_client_bound(
    value: float, base: float, value_bound: bool, base_bound: bool
) -> None:
    server = bound(value, *(["rps"] if value_bound else []))
    reference = bound(base, *(["rps"] if base_bound else []))
    found = ratio(server, reference, "rps")
    if value_bound or base_bound:
        assert found == CLIENT_BOUND
    else:
        assert found == value / base


def test_no_ratio_without_figures() -> None:
    assert ratio(Outcome("unsupported"), bound(1), "rps") is None
    assert ratio(bound(1), Outcome("error", note="x"), "rps") is None
    assert ratio(bound(1), Outcome("ok", {"rps": 0.0}), "rps") is None


def test_the_json_and_the_table_say_client_bound() -> None:
    outcomes = {
        "small": {"nginx": bound(50_000), "ferryman": bound(90_000, "rps"), "probe": bound(9e4)},
        "big": {"nginx": bound(1), "ferryman": bound(2)},
    }
    results = build_results(outcomes, "nginx", "probe")
    docs = {(r.workload, r.server): r.as_dict() for r in results}
    small = docs[("small", "ferryman")]
    assert small["ratios"]["rps"] == CLIENT_BOUND
    assert small["limit_ratios"]["rps"] == CLIENT_BOUND
    assert small["client_bound"] == ["rps"]
    assert json.loads(json.dumps(small))["ratios"]["rps"] == "client-bound"
    assert docs[("small", "nginx")]["limit_ratios"]["rps"] == pytest.approx(50_000 / 9e4, 1e-3)
    # The probe took no part in `big`: no ratio to it there.
    assert docs[("big", "ferryman")]["limit_ratios"] == {}
    assert docs[("big", "ferryman")]["ratios"]["rps"] == 2.0
    metric = Metric("rps", "req/s", "req/s", "higher")
    assert format_cell(small, metric) == "90,000 client-bound"
    assert format_cell(docs[("small", "nginx")], metric) == "50,000 x1.00"
    assert format_cell(docs[("big", "ferryman")], metric) == "2 x2.00"


def test_a_figure_client_bound_in_any_round_stays_client_bound() -> None:
    merged = median_outcome([bound(100), bound(300, "rps"), bound(200)])
    assert merged.metrics["rps"] == 200
    assert merged.client_bound == ["rps"]
    assert median_outcome([bound(100), bound(300)]).client_bound == []


def measured(cpu_s: float, wall_s: float = 3.0, cores: int = 1) -> Measured:
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    load = WrkResult(1000, 300_000, 3.0, errors, {"p99": 900}, {})
    load.client = ClientCpu(cpu_s, wall_s, cores)
    return Measured(load, server_cpu_s=1.5)


def test_a_saturated_generator_caps_only_the_rate_figures() -> None:
    metrics = {"gbps": 2.0, "cpu_s_per_gb": 0.2}
    saturated = measured_outcome(measured(2.9), metrics, ("gbps",), [])
    assert saturated.status == "ok"
    assert saturated.client_bound == ["gbps"]
    assert saturated.note == "client-bound: wrk used 97% of its 1 core"
    assert saturated.metrics["client_cpu_pct"] == pytest.approx(96.67, 0.01)
    assert saturated.metrics["server_cpu_pct"] == 50
    relaxed = measured_outcome(measured(2.0), metrics, ("gbps",), ["3 non-2xx"])
    assert relaxed.client_bound == []
    assert (relaxed.status, relaxed.note) == ("flagged", "3 non-2xx")


def test_a_rate_of_answers_carries_the_server_cpu_per_answer_even_when_client_bound() -> None:
    # 1.5 s of server CPU over the 1,000 answers of `measured`: 1,500 us each.
    saturated = measured_outcome(measured(2.9), {"rps": 333.3}, ("rps",), [])
    assert saturated.client_bound == ["rps"]
    assert saturated.metrics["cpu_us"] == pytest.approx(1500)
    nginx = Outcome("ok", {"rps": 400.0, "cpu_us": 600.0}, client_bound=["rps"])
    assert ratio(saturated, nginx, "rps") == CLIENT_BOUND
    assert ratio(saturated, nginx, "cpu_us") == pytest.approx(2.5)
    # Not beside a transfer's rate of bytes (it has its own cost per GB).
    assert "cpu_us" not in measured_outcome(measured(2.0), {"gbps": 2.0}, (), []).metrics


def test_no_cpu_per_answer_without_answers() -> None:
    empty = measured(2.0)
    empty.load.requests = 0
    assert math.isnan(measured_outcome(empty, {"rps": 0.0}, ("rps",), []).metrics["cpu_us"])


def test_an_unsaturated_reference_is_explained_by_its_load_generator() -> None:
    def doc(client_pct: float) -> dict[str, object]:
        metrics = {"rps": 40_000, "server_cpu_pct": 45, "client_cpu_pct": client_pct}
        result = {"workload": "small", "server": "nginx", "status": "ok", "note": ""}
        return {"reference": "nginx", "results": [{**result, "metrics": metrics}]}

    assert "the client was the limit" in render_notes(doc(96))
    busy = render_notes(doc(50))
    assert "neither was the limit" in busy
    assert "indicative only" in busy
