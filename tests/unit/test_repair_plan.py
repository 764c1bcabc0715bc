"""A repair's plan from an audit's findings, and the audit's rate limit (pure parts)."""

from __future__ import annotations

from ferryman.audit.model import AuditResult, Expected, Finding
from ferryman.audit.repair import PLANNED, UNREPAIRABLE, good_copies, plan
from ferryman.audit.run import RateLimit


def result(findings: list[Finding], stores: tuple[str, ...] = ("A", "B", "C")) -> AuditResult:
    return AuditResult("r", "t", "t", True, list(stores), 3, {}, findings)


def test_each_repairable_copy_is_planned_from_the_first_good_store() -> None:
    findings = [
        Finding("k1", "A", "missing"),
        Finding("k2", "B", "digest_mismatch"),
        Finding("k2", "A", "zero_byte"),
        Finding("k3", "A", "size_mismatch"),
        Finding("k3", "B", "size_mismatch"),
        Finding("k3", "C", "missing"),
        Finding("k4", "C", "unexpected"),
        Finding("k5", "B", "unreadable"),
    ]
    expected = {k: Expected(k, 1, "0" * 64) for k in ("k1", "k2", "k3", "k5")}
    repairs = {(r.key, r.store): (r.source, r.outcome) for r in plan(result(findings), expected)}
    assert repairs == {
        ("k1", "A"): ("B", PLANNED),
        ("k2", "A"): ("C", PLANNED),
        ("k2", "B"): ("C", PLANNED),
        ("k3", "A"): (None, UNREPAIRABLE),
        ("k3", "B"): (None, UNREPAIRABLE),
        ("k3", "C"): (None, UNREPAIRABLE),
    }  # unexpected and unreadable are never planned; no good copy: unrepairable
    assert good_copies(result(findings))["k2"] == ["C"]


def test_the_rate_limit_sleeps_just_enough() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limit = RateLimit(1000, clock=lambda: now[0], sleep=sleep)
    limit.spend(500)
    assert slept == [0.5]
    now[0] += 2.0  # slow reading: no sleep needed
    limit.spend(1000)
    assert slept == [0.5]
    RateLimit(None, clock=lambda: 0.0, sleep=sleep).spend(10**9)
    assert slept == [0.5]
