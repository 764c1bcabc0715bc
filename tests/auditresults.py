"""Audit results to render: a realistic run over three stores with hostile key names."""

from __future__ import annotations

from ferryman.audit.model import (
    DIGEST_MISMATCH,
    KINDS,
    MISSING,
    SIZE_MISMATCH,
    UNEXPECTED,
    UNREADABLE,
    ZERO_BYTE,
    AuditResult,
    Finding,
    StoreTally,
)

LOCAL = "/srv/mirror"
BACKUP = "s3://backup/mirror&old"  # an ampersand, to be escaped like any name
REPLICA = "s3://replica-eu/mirror/"

SHA_A = "a" * 64
SHA_B = "0123456789abcdef" * 4

# Names a hostile writer could give keys; each must show as text, never as markup.
SCRIPT_KEY = "<script>alert(1)</script>"
QUOTE_KEY = 'a"b'
NON_ASCII_KEY = "naïve/日本語 файл.txt"
HOSTILE_KEYS = (
    SCRIPT_KEY,
    QUOTE_KEY,
    NON_ASCII_KEY,
    '"><img src=x onerror=alert(2)>',
    "</style><script>alert(3)</script>",
    "</title><svg onload=alert(4)>",
    'comma, "quoted"\nand a newline.txt',
    "escape\x1b[2J\x1b[31mred",
    "evil\u202etxt.exe",
)


def realistic_result(*, finished: bool = True) -> AuditResult:
    """Three stores, every kind at least once, the replica cut short by an error."""
    findings = [
        Finding(SCRIPT_KEY, LOCAL, MISSING, expected_size=10, expected_sha256=SHA_A),
        Finding(QUOTE_KEY, LOCAL, ZERO_BYTE, expected_size=2048, actual_size=0),
        Finding(NON_ASCII_KEY, LOCAL, SIZE_MISMATCH, expected_size=7, actual_size=9),
        Finding(HOSTILE_KEYS[3], BACKUP, DIGEST_MISMATCH, 5, 5, SHA_A, SHA_B),
        Finding(HOSTILE_KEYS[4], BACKUP, UNEXPECTED, actual_size=123, actual_sha256=SHA_B),
        Finding(HOSTILE_KEYS[5], BACKUP, MISSING, expected_size=None),
        Finding(HOSTILE_KEYS[6], REPLICA, MISSING, expected_size=1_234_567_890),
        Finding(HOSTILE_KEYS[7], REPLICA, UNREADABLE, actual_size=77, detail="read failed: EIO"),
        Finding(HOSTILE_KEYS[8], REPLICA, UNEXPECTED, actual_size=1),
    ]
    findings += [
        Finding(f"data/2024/part-{i:05d}.parquet", BACKUP, MISSING, expected_size=1 << 20)
        for i in range(12)
    ]
    tallies = {store: StoreTally(store) for store in (LOCAL, BACKUP, REPLICA)}
    for finding in findings:
        tallies[finding.store].add(finding.kind)
    tallies[LOCAL].counts["ok"] = 1_480
    tallies[BACKUP].counts["ok"] = 1_463
    tallies[REPLICA].counts["ok"] = 912
    tallies[REPLICA].complete = False
    tallies[REPLICA].error = "listing failed: AccessDenied (s3://replica-eu/mirror/<b>)"
    return AuditResult(
        run_id="20250314T101500Z-7f3a",
        started="2025-03-14T10:15:00Z",
        finished="2025-03-14T11:02:41Z" if finished else None,
        deep=True,
        stores=[LOCAL, BACKUP, REPLICA],
        expected=1_483,
        tallies=tallies,
        findings=findings,
        resumed=True,
    )


def counts_by_store_and_kind(result: AuditResult) -> dict[tuple[str, str], int]:
    """What the chart must show, counted from the findings themselves."""
    counted = {(store, kind): 0 for store in result.stores for kind in KINDS}
    for finding in result.findings:
        counted[finding.store, finding.kind] += 1
    return counted


def clean_result() -> AuditResult:
    """One store, nothing wrong."""
    tally = StoreTally(LOCAL)
    tally.counts["ok"] = 42
    return AuditResult(
        run_id="r1",
        started="2025-01-01T00:00:00Z",
        finished="2025-01-01T00:00:05Z",
        deep=False,
        stores=[LOCAL],
        expected=42,
        tallies={LOCAL: tally},
        findings=[],
    )
