"""Results: ratios to the reference server (nginx) and to the limit probe, the
printed table, the JSON file.

A ratio involving a client-bound figure (its own, or the one it divides by)
is not a result: it is reported as "client-bound" in the table and the JSON.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from clientload import CLIENT_BOUND, CLIENT_BOUND_SHARE
from machine import machine_info, machine_line
from outcome import Metric, Outcome, Workload
from settings import LIMIT, REFERENCE, Settings

SCHEMA = 2
SHOWN = ("ok", "flagged")  # statuses whose figures are shown and compared
NOT_APPLICABLE = "not applicable"  # a server the workload cannot be run against
Ratio = float | str  # a ratio, or CLIENT_BOUND where it would involve a client-bound figure


@dataclass
class Result:
    workload: str
    server: str
    outcome: Outcome
    ratios: dict[str, Ratio]  # to the reference (nginx)
    limit_ratios: dict[str, Ratio] = field(default_factory=dict)  # to the probe, where it ran

    def as_dict(self) -> dict[str, object]:
        o = self.outcome
        return {
            "workload": self.workload,
            "server": self.server,
            "status": o.status,
            "note": o.note,
            "client_bound": o.client_bound,
            "metrics": {k: _finite(v) for k, v in o.metrics.items()},
            "ratios": {k: _ratio(v) for k, v in self.ratios.items()},
            "limit_ratios": {k: _ratio(v) for k, v in self.limit_ratios.items()},
            "details": o.details,
        }


def _finite(value: float) -> float | None:
    return round(value, 4) if isinstance(value, int | float) and math.isfinite(value) else None


def _ratio(value: Ratio) -> float | str | None:
    return value if isinstance(value, str) else _finite(value)


def ratio(outcome: Outcome, base: Outcome, key: str) -> Ratio | None:
    """outcome's figure / base's figure; CLIENT_BOUND when either figure is client-bound;
    None when there is no figure to divide (or nothing to divide by)."""
    value, divisor = outcome.metrics.get(key), base.metrics.get(key)
    if outcome.status not in SHOWN or base.status not in SHOWN:
        return None
    if value is None or divisor is None:
        return None
    if key in outcome.client_bound or key in base.client_bound:
        return CLIENT_BOUND
    if divisor and math.isfinite(divisor) and math.isfinite(value):
        return value / divisor
    return None


def ratios_to_reference(outcomes: dict[str, Outcome], reference: str) -> dict[str, dict]:
    """For each server: metric -> value / reference's value (or CLIENT_BOUND)."""
    ref = outcomes.get(reference)
    ratios: dict[str, dict] = {name: {} for name in outcomes}
    if ref is None:
        return ratios
    for name, outcome in outcomes.items():
        for key in outcome.metrics:
            found = ratio(outcome, ref, key)
            if found is not None:
                ratios[name][key] = found
    return ratios


def median_outcome(rounds: list[Outcome]) -> Outcome:
    """One outcome from several rounds of the same workload and server: each metric's
    median over the rounds whose figures count; every round's figures kept in details.

    A round without figures (an error, a server that did not start) leaves the
    result flagged, so that a crash in one round shows in the notes."""
    counted = [o for o in rounds if o.status in SHOWN]
    if len(rounds) == 1 or not counted:
        return rounds[0]
    metrics = {
        key: statistics.median(o.metrics[key] for o in counted if key in o.metrics)
        for key in counted[0].metrics
    }
    clean = all(o.status == "ok" for o in rounds)
    # A figure client-bound in any round is not trusted as the median either.
    bound = sorted({key for o in counted for key in o.client_bound})
    return Outcome(
        "ok" if clean else "flagged",
        metrics,
        "; ".join(_round_notes(rounds)),
        {
            "rounds": [
                {"status": o.status, "metrics": o.metrics, "client_bound": o.client_bound}
                for o in rounds
            ],
            "last": rounds[-1].details,
        },
        bound,
    )


def _round_notes(rounds: list[Outcome]) -> list[str]:
    """Each distinct note once; a round without figures also says its number and status."""
    notes: list[str] = []
    for number, o in enumerate(rounds, 1):
        note = o.note
        if o.status not in SHOWN:
            note = f"round {number} {o.status}" + (f": {o.note}" if o.note else "")
        if note and note not in notes:
            notes.append(note)
    return notes


def build_results(
    outcomes: dict[str, dict[str, Outcome]], reference: str, limit: str = LIMIT
) -> list[Result]:
    """outcomes: workload key -> server name -> Outcome (only the servers that took
    part in that workload). Ratios to `limit` only where it took part."""
    results = []
    for workload, by_server in outcomes.items():
        ratios = ratios_to_reference(by_server, reference)
        limits = ratios_to_reference(by_server, limit) if limit in by_server else {}
        for server, outcome in by_server.items():
            results.append(
                Result(workload, server, outcome, ratios[server], limits.get(server, {}))
            )
    return results


def build_document(
    settings: Settings,
    workloads: list[Workload],
    servers: list[dict[str, str]],
    results: list[Result],
    started: datetime,
    finished: datetime,
) -> dict[str, object]:
    return {
        "schema": SCHEMA,
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "mode": settings.mode,
        "reference": REFERENCE,
        "limit": LIMIT,
        "machine": machine_info(settings),
        "settings": settings.as_dict(),
        "servers": servers,
        "workloads": [
            {
                "key": w.key,
                "title": w.describe(settings),
                "metrics": [
                    {
                        "key": m.key,
                        "label": m.label,
                        "unit": m.unit,
                        "better": m.better,
                        "digits": m.digits,
                    }
                    for m in w.metrics
                ],
            }
            for w in workloads
        ],
        "results": [r.as_dict() for r in results],
    }


def save_document(
    doc: dict[str, object], results_dir: Path, started: datetime, prefix: str = ""
) -> Path:
    """`PREFIXrun-STAMP.json` and `PREFIXlatest.json` (prefix `tls-` for the TLS variant)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=2) + "\n"
    stamped = results_dir / f"{prefix}run-{started:%Y%m%d-%H%M%S}.json"
    stamped.write_text(text)
    (results_dir / f"{prefix}latest.json").write_text(text)
    return stamped


# ---------------------------------------------------------------- table ----


def format_value(value: float | None, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.{digits}f}"


def format_ratio(value: float | str | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else f"x{value:.2f}"


def format_cell(result: dict, metric: Metric) -> str:
    """'54,900 x1.00', '97,000 client-bound' (a figure the load generator capped, no
    ratio), with '!' for a flagged figure; or the status."""
    status = result["status"]
    if status not in SHOWN:
        return status
    value = format_value(result["metrics"].get(metric.key), metric.digits)
    if metric.key in result.get("client_bound", ()):
        cell = f"{value} {CLIENT_BOUND}"
    else:
        ratio = format_ratio(result["ratios"].get(metric.key))
        cell = f"{value} {ratio}" if ratio else value
    return cell + (" !" if status == "flagged" else "")


def _columns(doc: dict) -> list[tuple[str, str, Metric]]:
    """(workload key, column header, metric) for every metric shown."""
    columns = []
    for w in doc["workloads"]:
        for m in w["metrics"]:
            metric = Metric(m["key"], m["label"], m["unit"], m["better"], m["digits"])
            arrow = "^" if m["better"] == "higher" else "v"
            columns.append((w["key"], f"{w['key']} {m['label']} {arrow}", metric))
    return columns


TABLE_WIDTH = 110


def _render_rows(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _chunks(columns: list[list[str]], first_width: int) -> list[list[list[str]]]:
    """Split columns (each a list of cells) into groups that fit TABLE_WIDTH."""
    groups: list[list[list[str]]] = [[]]
    width = first_width
    for column in columns:
        column_width = max(len(cell) for cell in column) + 3
        if groups[-1] and width + column_width > TABLE_WIDTH:
            groups.append([])
            width = first_width
        groups[-1].append(column)
        width += column_width
    return groups


def render_table(doc: dict) -> str:
    """One row per server, one column per metric: value and ratio to nginx.

    Columns that do not fit TABLE_WIDTH go on to a second table below.
    """
    index = {(r["workload"], r["server"]): r for r in doc["results"]}
    servers = [s["name"] for s in doc["servers"]]
    first = ["server", *servers]
    columns = []
    for workload, title, metric in _columns(doc):
        cells = [title]
        for server in servers:
            result = index.get((workload, server))
            cells.append(format_cell(result, metric) if result else "-")
        columns.append(cells)
    tables = []
    for group in _chunks(columns, max(len(c) for c in first)):
        rows = [list(row) for row in zip(first, *group, strict=True)]
        tables.append(_render_rows(rows))
    return "\n\n".join(tables)


LOAD_BOUND_PCT = 80  # below this, the reference server was not the bottleneck


def render_notes(doc: dict) -> str:
    """Why results are not plainly ok (one line per distinct reason), and
    where the reference server was not saturated, so ratios understate gaps."""
    reasons: dict[tuple[str, str, str], list[str]] = {}
    for r in doc["results"]:
        if r["status"] != "ok" or r.get("client_bound"):
            reasons.setdefault((r["server"], r["status"], r["note"]), []).append(r["workload"])
    lines = [
        f"  {server}, {status} in {', '.join(workloads)}: {note}"
        for (server, status, note), workloads in reasons.items()
    ]
    for workload, pct in load_bound(doc).items():
        lines.append(f"  {workload}: {unsaturated_note(doc, workload, pct)}")
    return "\n".join(lines)


def unsaturated_note(doc: dict, workload: str, server_pct: float) -> str:
    """Why the reference server did not use its CPU: its load generator was at its
    limit (then the figures say client-bound already), or neither was: other work
    on the machine took the CPU, and the figures are indicative only."""
    reference = doc["reference"]
    client = next(
        (r["metrics"].get("client_cpu_pct") for r in doc["results"]
         if r["workload"] == workload and r["server"] == reference),
        None,
    )  # fmt: skip
    said = f"{reference} used {server_pct:.0f}% of its CPU"
    if client is None:
        return f"{said}: ratios there flatter slower servers"
    if client >= 100 * CLIENT_BOUND_SHARE:
        return f"{said}, the load generator {client:.0f}% of its own: the client was the limit"
    return (
        f"{said} and the load generator {client:.0f}% of its own: neither was the limit, "
        "other work on the machine took the CPU, so these figures are indicative only"
    )


def load_bound(doc: dict) -> dict[str, float]:
    """Request-rate workloads where the reference server was not saturated:
    workload key -> the reference's CPU percent. (Bulk transfers are meant to
    leave the server's CPU idle, so they are not listed.)"""
    found = {}
    for r in doc["results"]:
        pct = r["metrics"].get("server_cpu_pct")
        reference = r["server"] == doc["reference"] and "rps" in r["metrics"]
        if reference and pct is not None and pct < LOAD_BOUND_PCT:
            found[r["workload"]] = pct
    return found


def render_legend(doc: dict) -> str:
    lines = [f"  {w['key']:<10} {w['title']}" for w in doc["workloads"]]
    lines.append(
        f"  ratios are value / {doc['reference']}'s value from this run; "
        "^ higher is better, v lower is better; ! = flagged (see notes)"
    )
    lines.append(
        f"  {CLIENT_BOUND}: the load generator used 90% or more of its cores, so the figure "
        "is its limit and no ratio is drawn from it"
    )
    return "\n".join(lines)


def render_limits(doc: dict, server: str = "ferryman") -> str:
    """`server` as a share of the reference and of the limit probe, for every
    workload the probe took part in."""
    lines = []
    for r in doc["results"]:
        if r["server"] != server or not r.get("limit_ratios"):
            continue
        for key, to_limit in r["limit_ratios"].items():
            if key not in ("rps", "gbps"):
                continue
            to_ref = format_ratio(r["ratios"].get(key)) or "-"
            lines.append(
                f"  {r['workload']} {key}: {to_ref} of {doc['reference']}, "
                f"{format_ratio(to_limit)} of the {doc['limit']}"
            )
    return "\n".join(lines)


def render_text(doc: dict) -> str:
    parts = [
        f"ferryman benchmark, {doc['mode']} mode, {doc['started']}",
        machine_line(doc["machine"]),
        "",
        render_table(doc),
        "",
        "workloads:",
        render_legend(doc),
    ]
    limits = render_limits(doc)
    if limits:
        parts += ["", f"ferryman against {doc['reference']} and the {doc['limit']}:", limits]
    notes = render_notes(doc)
    if notes:
        parts += ["", "notes:", notes]
    return "\n".join(parts)
