"""The audit benchmark's pure parts: what each tool said, rounds merged, ratios, the table.

No processes and no files here (tests/unit/test_audit_bench.py covers it):

- each tool's output is read back, so that a run counts only when the tool
  compared every key and found them all equal (a tool that stopped early,
  or compared nothing, would otherwise look fast);
- a timed run becomes metrics (rate, wall, user and system CPU, CPU share);
- the rounds of one tool become their median (report.median_outcome: a round
  that broke flags the result, and its note says why);
- ratios are ferryman's rate over each peer's, so above 1 means ferryman
  was faster, and each target is met or not.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from outcome import Outcome
from report import median_outcome

MB = 1_000_000  # deep verify rates are in MB/s: 10^6 bytes a second
FERRYMAN = "ferryman"


@dataclass(frozen=True)
class Timed:
    """One run of one tool: its exit status, wall seconds and CPU seconds (from wait4)."""

    returncode: int
    wall_s: float
    user_s: float
    sys_s: float
    stdout: str = ""
    stderr: str = ""
    peer_cpu_s: float | None = None  # the S3 server's CPU seconds over the run


@dataclass(frozen=True)
class Verdict:
    """What a tool's output says it compared: keys equal, and anything else it reported."""

    matching: int | None
    problem: str = ""  # empty when the tool reports no difference and no error


# ---------------------------------------------------------- tool output ----

_RCLONE_COUNT = re.compile(
    r"NOTICE: .*?: (\d+) (differences found|matching files|files missing"
    r"|errors while checking|hashes could not be checked)"
)


def parse_rclone_check(stderr: str) -> Verdict:
    """`rclone check`'s NOTICE lines: "N matching files", "N differences found", ..."""
    counts: dict[str, int] = {}
    for match in _RCLONE_COUNT.finditer(stderr):
        counts[match.group(2)] = counts.get(match.group(2), 0) + int(match.group(1))
    problems = [f"{n} {what}" for what, n in counts.items() if what != "matching files" and n]
    errors = [line for line in stderr.splitlines() if " ERROR : " in line or "Failed" in line]
    if errors and not problems:
        problems.append(errors[0].split(" ERROR : ")[-1].strip())
    if "matching files" not in counts and not problems:
        problems.append("no summary from rclone check")
    return Verdict(counts.get("matching files"), "; ".join(problems))


def parse_sha256sum_check(stdout: str, stderr: str = "") -> Verdict:
    """`sha256sum -c` over a manifest naming every file of each tree as SIDE/KEY: one
    "SIDE/KEY: OK" line per file. `matching` counts the keys OK in every side; any
    other line is a problem."""
    sides_ok: dict[str, set[str]] = {}
    bad = []
    for line in stdout.splitlines():
        if line.endswith(": OK"):
            side, _, key = line[: -len(": OK")].partition("/")
            sides_ok.setdefault(key, set()).add(side)
        elif line.strip():
            bad.append(line.strip())
    sides = set().union(*sides_ok.values()) if sides_ok else set()
    matching = sum(1 for found in sides_ok.values() if found == sides)
    problems = [f"{len(bad)} not OK, e.g. {bad[0]}"] if bad else []
    problems += [line.strip() for line in stderr.splitlines() if line.strip()][:1]
    if matching != len(sides_ok):
        problems.append(f"{len(sides_ok) - matching} keys OK in some trees only")
    return Verdict(matching, "; ".join(problems))


_FERRYMAN_RUN = re.compile(
    r"^audit \S+: ([\d,]+) keys expected, (listing only|deep \(every byte read\))"
    r".*; (complete|INCOMPLETE); (\d[\d,]*|no) findings?$",
    re.MULTILINE,
)
_TABLE_RULE = re.compile(r"^-+(  -+)+$")


def parse_ferryman_audit(stdout: str) -> Verdict:
    """The summary `ferryman audit` prints: the run line, then a table with a row per
    store ("store ok missing ... complete"). `matching` is the smallest "ok" count of a
    store: each key equal in every store."""
    run = _FERRYMAN_RUN.search(stdout)
    if run is None:
        return Verdict(None, "no summary from ferryman audit")
    lines = stdout[run.end() :].splitlines()
    rule = next((i for i, line in enumerate(lines) if _TABLE_RULE.match(line)), None)
    oks = []
    if rule is not None:
        for line in lines[rule + 1 :]:
            cells = line.split()
            if len(cells) < 3 or not cells[1].replace(",", "").isdigit():
                break
            oks.append(int(cells[1].replace(",", "")))
    problems = []
    if run.group(3) != "complete":
        problems.append("the audit is incomplete")
    findings = run.group(4)
    if findings not in ("0", "no"):
        problems.append(f"{findings} findings")
    if not oks:
        problems.append("no store table in the summary")
    return Verdict(min(oks) if oks else None, "; ".join(problems))


def problem_of(timed: Timed, verdict: Verdict, expected: int) -> str:
    """Why the run does not count ("" when it does): the tool must exit 0 having found
    exactly `expected` keys equal and reported nothing else."""
    why = verdict.problem
    if not why and verdict.matching != expected:
        why = f"{verdict.matching} keys found equal, {expected} expected"
    if timed.returncode != 0:
        why = f"exit status {timed.returncode}" + (f": {why}" if why else "")
    return why


def run_metrics(timed: Timed, work: float, unit: str) -> dict[str, float]:
    """rate (keys/s for "objects", MB/s for "bytes"), wall, CPU and the CPU share."""
    cpu = timed.user_s + timed.sys_s
    scale = MB if unit == "bytes" else 1
    metrics = {
        "rate": work / scale / timed.wall_s if timed.wall_s > 0 else math.nan,
        "wall_s": timed.wall_s,
        "user_s": timed.user_s,
        "sys_s": timed.sys_s,
        "cpu_s": cpu,
        "cpu_pct": 100 * cpu / timed.wall_s if timed.wall_s > 0 else math.nan,
    }
    if timed.peer_cpu_s is not None:
        metrics["server_cpu_s"] = timed.peer_cpu_s
    return metrics


def outcome_of(timed: Timed, verdict: Verdict, expected: int, work: float, unit: str) -> Outcome:
    """One run: "ok" with its metrics, or "error" saying why it does not count."""
    details: dict[str, object] = {"returncode": timed.returncode}
    why = problem_of(timed, verdict, expected)
    if why:
        return Outcome("error", note=why, details=details)
    return Outcome("ok", run_metrics(timed, work, unit), details=details)


def merge_rounds(rounds: list[Outcome]) -> Outcome:
    """Each metric's median over the rounds that counted (a round that broke flags the
    result, and the note says which and why); every round kept in the details."""
    merged = median_outcome(rounds)
    return Outcome(
        merged.status, merged.metrics, merged.note, {"rounds": [_round(o) for o in rounds]}
    )


def _round(outcome: Outcome) -> dict[str, object]:
    return {"status": outcome.status, "note": outcome.note, "metrics": outcome.metrics}


def ratios(outcomes: dict[str, Outcome], metric: str = "rate") -> dict[str, float]:
    """Peer name -> ferryman's `metric` over the peer's (only where both have figures)."""
    ours = outcomes.get(FERRYMAN)
    if ours is None or ours.status not in ("ok", "flagged") or metric not in ours.metrics:
        return {}
    found = {}
    for name, outcome in outcomes.items():
        if name == FERRYMAN or outcome.status not in ("ok", "flagged"):
            continue
        theirs = outcome.metrics.get(metric)
        if theirs and math.isfinite(theirs) and math.isfinite(ours.metrics[metric]):
            found[name] = ours.metrics[metric] / theirs
    return found


# ---------------------------------------------------------------- table ----


def _number(value: float | None, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def render_table(doc: dict) -> str:
    """A row per section and tool: the rate, ferryman/peer, wall, CPU (user, sys, share of
    one CPU) and, against moto, the server's CPU seconds over the run."""
    header = [
        "section",
        "tool",
        "rate",
        "ferryman/peer",
        "wall s",
        "user s",
        "sys s",
        "CPU %",
        "server CPU s",
    ]
    rows = [header]
    for section in doc["sections"]:
        unit = "obj/s" if section["unit"] == "objects" else "MB/s"
        for i, result in enumerate(section["results"]):
            m = result["metrics"]
            shown = result["status"] in ("ok", "flagged")
            ratio = section["ratios"].get(result["tool"])
            rate = f"{_number(m.get('rate'), 1)} {unit}" if shown else result["status"]
            if shown and result["status"] == "flagged":
                rate += " !"
            rows.append(
                [
                    section["key"] if i == 0 else "",
                    result["tool"],
                    rate,
                    f"x{ratio:.2f}" if ratio is not None else "",
                    _number(m.get("wall_s")) if shown else "",
                    _number(m.get("user_s")) if shown else "",
                    _number(m.get("sys_s")) if shown else "",
                    _number(m.get("cpu_pct"), 0) if shown else "",
                    _number(m.get("server_cpu_s")) if shown and "server_cpu_s" in m else "",
                ]
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {2, 3, 4, 5, 6, 7, 8}
    lines = []
    for row in rows:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_targets(doc: dict) -> str:
    lines = []
    for target in doc["targets"]:
        ratio = target["ratio"]
        if ratio is None:
            state = "not measured"
        elif target.get("reported"):
            state = "reported, not a target"
        else:
            state = "met" if target["met"] else "NOT met"
        shown = "" if ratio is None else f" (x{ratio:.2f})"
        lines.append(f"  {target['what']}: {state}{shown}")
    return "\n".join(lines)


def render_notes(doc: dict) -> str:
    notes = []
    for section in doc["sections"]:
        for result in section["results"]:
            if result["note"]:
                notes.append(
                    f"  {section['key']}, {result['tool']} ({result['status']}): {result['note']}"
                )
        if section.get("note"):
            notes.append(f"  {section['key']}: {section['note']}")
    return "\n".join(notes)


def target(what: str, section: str, peer: str, found: dict[str, float]) -> dict[str, object]:
    """A target "ferryman at least as fast as `peer` in `section`": its ratio, met or not."""
    ratio = found.get(peer)
    return {
        "what": what,
        "section": section,
        "peer": peer,
        "ratio": round(ratio, 3) if ratio is not None else None,
        "met": None if ratio is None else ratio >= 1.0,
    }


def reported(what: str, section: str, peer: str, found: dict[str, float]) -> dict[str, object]:
    """A ratio shown beside the targets but held to none: a first audit writes what the
    catalog learns of every copy (a row and an event each), which its peer never does;
    the target is the repeated audit's (decision 0043)."""
    return {**target(what, section, peer, found), "met": None, "reported": True}
