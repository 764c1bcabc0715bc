"""The audit benchmark's pure parts: each tool's output read back, a run counted only when
the tool compared every key, rounds merged into medians, ferryman/peer ratios, targets."""

from __future__ import annotations

import statistics

from hypothesis import given
from hypothesis import strategies as st

from ferryman.audit.model import AuditResult, Finding, StoreTally
from ferryman.audit.report import render_text
from tests.benchpath import BENCH_DIR

assert BENCH_DIR.is_dir()  # bench/ is on sys.path: its modules by plain name

from audit_report import (  # noqa: E402
    FERRYMAN,
    MB,
    Timed,
    Verdict,
    merge_rounds,
    outcome_of,
    parse_ferryman_audit,
    parse_rclone_check,
    parse_sha256sum_check,
    ratios,
    render_table,
    render_targets,
    reported,
    target,
)
from outcome import Outcome  # noqa: E402

RCLONE_CLEAN = """\
2026/12/06 04:03:46 NOTICE: Local file system at /tmp/b/mirror: 0 differences found
2026/12/06 04:03:46 NOTICE: Local file system at /tmp/b/mirror: 50000 matching files
"""

RCLONE_FAULTS = """\
2026/12/06 04:08:46 ERROR : extra: file not in Local file system at /tmp/ab/big/mirror
2026/12/06 04:08:47 NOTICE: Local file system at /tmp/ab/big/mirror: 1 files missing
2026/12/06 04:08:47 NOTICE: Local file system at /tmp/ab/big/mirror: 2 differences found
2026/12/06 04:08:47 NOTICE: Local file system at /tmp/ab/big/mirror: 2 errors while checking
2026/12/06 04:08:47 NOTICE: Local file system at /tmp/ab/big/mirror: 27 matching files
2026/12/06 04:08:47 Failed to check with 2 errors: last error was: 2 differences found
"""

RCLONE_NO_START = """\
2026/12/06 04:05:44 Failed to create file system for "moto:bucket": LoadCustomCABundleError
"""


def audit_result(keys: int, stores: list[str], findings: list[Finding] | None = None,
                 complete: bool = True) -> AuditResult:  # fmt: skip
    tallies = {}
    for store in stores:
        tally = StoreTally(store, complete=complete)
        tally.counts["ok"] = keys - sum(1 for f in findings or [] if f.store == store)
        tallies[store] = tally
    return AuditResult(
        run_id="0123456789abcdef", started="2026-12-06T04:00:00+00:00",
        finished="2026-12-06T04:00:05+00:00" if complete else None, deep=False,
        stores=stores, expected=keys, tallies=tallies, findings=findings or [],
    )  # fmt: skip


def timed(wall: float, code: int = 0, user: float = 0.5, sys_s: float = 0.25) -> Timed:
    return Timed(code, wall, user, sys_s)


# -- what each tool said -------------------------------------------------------------


def test_rclone_check_with_every_file_matching() -> None:
    assert parse_rclone_check(RCLONE_CLEAN) == Verdict(50000, "")


def test_rclone_check_differences_are_a_problem_even_with_matches() -> None:
    verdict = parse_rclone_check(RCLONE_FAULTS)
    assert verdict.matching == 27
    assert "1 files missing" in verdict.problem and "2 differences found" in verdict.problem


def test_rclone_that_did_not_start_says_why() -> None:
    verdict = parse_rclone_check(RCLONE_NO_START)
    assert verdict.matching is None
    assert "LoadCustomCABundleError" in verdict.problem


def test_sha256sum_counts_a_key_once_it_is_ok_in_both_trees() -> None:
    out = "src/a: OK\nmirror/a: OK\nsrc/d/b: OK\nmirror/d/b: OK\n"
    assert parse_sha256sum_check(out) == Verdict(2, "")


def test_sha256sum_failures_and_one_sided_keys_are_problems() -> None:
    out = "src/a: OK\nmirror/a: FAILED\nsrc/b: OK\nmirror/b: OK\n"
    verdict = parse_sha256sum_check(out, "sha256sum: WARNING: 1 computed checksum did NOT match")
    assert verdict.matching == 1
    assert "1 not OK, e.g. mirror/a: FAILED" in verdict.problem
    assert "WARNING" in verdict.problem
    assert "1 keys OK in some trees only" in verdict.problem


def test_ferryman_summary_as_ferryman_prints_it() -> None:
    text = render_text(audit_result(50_000, ["/tmp/b/src", "/tmp/b/mirror"]))
    assert parse_ferryman_audit(text) == Verdict(50_000, "")


def test_ferryman_summary_with_findings_counts_the_keys_ok_everywhere() -> None:
    finding = Finding("a.dat", "s3://mirror", "missing", expected_size=10)
    text = render_text(audit_result(1200, ["s3://src", "s3://mirror"], [finding]))
    verdict = parse_ferryman_audit(text)
    assert verdict.matching == 1199
    assert "1 findings" in verdict.problem


def test_ferryman_incomplete_audit_is_a_problem() -> None:
    text = render_text(audit_result(10, ["/src"], complete=False))
    assert "incomplete" in parse_ferryman_audit(text).problem


def test_ferryman_without_a_summary() -> None:
    verdict = parse_ferryman_audit("ferryman: error: no catalog at /x\n")
    assert verdict == Verdict(None, "no summary from ferryman audit")


# -- a run, counted or not ---------------------------------------------------------------


def test_a_clean_run_gives_its_rate_and_cpu() -> None:
    outcome = outcome_of(timed(2.0), Verdict(1000, ""), 1000, 1000, "objects")
    assert outcome.status == "ok"
    assert outcome.metrics["rate"] == 500
    assert outcome.metrics["cpu_s"] == 0.75
    assert outcome.metrics["cpu_pct"] == 37.5


def test_bytes_are_counted_in_mb_a_second() -> None:
    outcome = outcome_of(timed(4.0), Verdict(3, ""), 3, 2000 * MB, "bytes")
    assert outcome.metrics["rate"] == 500


def test_a_run_that_compared_fewer_keys_does_not_count() -> None:
    outcome = outcome_of(timed(0.1), Verdict(10, ""), 1000, 1000, "objects")
    assert outcome.status == "error"
    assert outcome.note == "10 keys found equal, 1000 expected"
    assert outcome.metrics == {}


def test_a_failing_exit_status_does_not_count() -> None:
    outcome = outcome_of(timed(0.1, code=1), Verdict(1000, ""), 1000, 1000, "objects")
    assert outcome.status == "error"
    assert outcome.note.startswith("exit status 1")


# -- rounds, ratios, targets ---------------------------------------------------------------


def test_rounds_merge_to_the_median_of_each_metric() -> None:
    rounds = [outcome_of(timed(w), Verdict(100, ""), 100, 100, "objects") for w in (1, 4, 2)]
    merged = merge_rounds(rounds)
    assert merged.status == "ok"
    assert merged.metrics["wall_s"] == 2
    assert merged.metrics["rate"] == 50
    assert [r["metrics"]["wall_s"] for r in merged.details["rounds"]] == [1, 4, 2]


def test_a_round_that_broke_flags_the_merged_result() -> None:
    broken = outcome_of(timed(1, code=2), Verdict(None, "no summary"), 100, 100, "objects")
    good = outcome_of(timed(2), Verdict(100, ""), 100, 100, "objects")
    merged = merge_rounds([good, broken, good])
    assert merged.status == "flagged"
    assert "exit status 2: no summary" in merged.note
    assert merged.metrics["wall_s"] == 2


@given(st.lists(st.floats(0.01, 1000), min_size=1, max_size=9).filter(lambda w: len(w) % 2))
def test_the_median_rate_is_the_rate_of_the_median_wall(walls: list[float]) -> None:
    rounds = [outcome_of(timed(w), Verdict(7, ""), 7, 5000, "objects") for w in walls]
    merged = merge_rounds(rounds)
    assert merged.metrics["rate"] == 5000 / statistics.median(walls)


def test_ratios_are_ferrymans_rate_over_each_peers() -> None:
    outcomes = {
        FERRYMAN: Outcome("ok", {"rate": 300.0}),
        "sha256sum": Outcome("ok", {"rate": 100.0}),
        "rclone": Outcome("flagged", {"rate": 600.0}),
        "broken": Outcome("error", note="exit status 1"),
    }
    assert ratios(outcomes) == {"sha256sum": 3.0, "rclone": 0.5}
    assert ratios({**outcomes, FERRYMAN: Outcome("error")}) == {}


def test_a_target_is_met_at_a_ratio_of_one_or_more() -> None:
    assert target("t", "deep-cold", "sha256sum", {"sha256sum": 1.0})["met"] is True
    assert target("t", "listing-local", "rclone", {"rclone": 0.21})["met"] is False
    unmeasured = target("t", "listing-s3", "rclone", {})
    assert unmeasured["met"] is None and unmeasured["ratio"] is None


def test_a_reported_ratio_is_shown_but_never_met_or_missed() -> None:
    shown = reported("first", "listing-local-first", "rclone", {"rclone": 0.38})
    assert shown["ratio"] == 0.38 and shown["met"] is None
    doc = {"targets": [shown, target("repeated", "listing-local", "rclone", {"rclone": 0.9})]}
    assert render_targets(doc).splitlines() == [
        "  first: reported, not a target (x0.38)",
        "  repeated: NOT met (x0.90)",
    ]


def test_the_table_shows_rates_ratios_and_cpu() -> None:
    doc = {
        "sections": [{
            "key": "deep-cold", "unit": "bytes", "ratios": {"sha256sum": 1.7},
            "results": [
                {"tool": FERRYMAN, "status": "ok", "note": "",
                 "metrics": {"rate": 467.2, "wall_s": 9.2, "user_s": 4.1, "sys_s": 2.3,
                             "cpu_pct": 70.0}},
                {"tool": "sha256sum", "status": "ok", "note": "",
                 "metrics": {"rate": 275.0, "wall_s": 15.6, "user_s": 13.0, "sys_s": 2.2,
                             "cpu_pct": 97.0}},
                {"tool": "rclone", "status": "error", "note": "exit status 1", "metrics": {}},
            ],
        }],
    }  # fmt: skip
    lines = render_table(doc).splitlines()
    assert "467 MB/s" in lines[2] and "9.20" in lines[2] and "70" in lines[2]
    assert "275 MB/s" in lines[3] and "x1.70" in lines[3]
    assert "error" in lines[4]
