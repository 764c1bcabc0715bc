"""The audit's HTML report: one self-contained page, readable without its script.

The page holds the run's facts, a bar chart of findings per store and kind
(inline SVG, each bar with its count as text), the summary table and the
findings, one table per kind. It loads nothing (htmlassets.py has its
style, script and policy), follows the reader's light or dark scheme, and
fits a phone.

Every key and store name is hostile: each goes through `shown` (control and
invisible characters become escapes) and then `html.escape`, in text and in
attributes alike. Rows carry a store's index, never its name, for the script.

A run may have 100,000 findings: the page shows at most `rows_per_group`
of each kind on each store, says how many it left out, and points to the
JSON or CSV report, which list them all.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from ferryman.audit.htmlassets import CONTENT_SECURITY_POLICY, SCRIPT, STYLE
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
)
from ferryman.audit.reportview import COLUMNS, incomplete_stores, shown, summary

ROWS_PER_GROUP = 1000  # findings of one kind on one store shown in the page
DIGEST_SHOWN = 16  # hex digits of a SHA-256 in a cell; the whole digest is its tooltip

# Per kind, the columns after key and store that say what is wrong.
KIND_COLUMNS: dict[str, tuple[str, ...]] = {
    MISSING: ("expected_size", "expected_sha256"),
    ZERO_BYTE: ("expected_size", "actual_size"),
    SIZE_MISMATCH: ("expected_size", "actual_size"),
    DIGEST_MISMATCH: ("actual_size", "expected_sha256", "actual_sha256"),
    UNEXPECTED: ("actual_size", "actual_sha256"),
    UNREADABLE: ("actual_size", "detail"),
}
HEADINGS = {
    "expected_size": "expected size",
    "actual_size": "stored size",
    "expected_sha256": "expected SHA-256",
    "actual_sha256": "stored SHA-256",
    "detail": "why",
}
KIND_HELP = {
    MISSING: "expected, not stored",
    ZERO_BYTE: "stored empty where bytes were expected",
    SIZE_MISMATCH: "stored with another size",
    DIGEST_MISMATCH: "stored with other bytes (another SHA-256)",
    UNEXPECTED: "stored, not expected",
    UNREADABLE: "listed, but could not be read to check it",
}

# The chart's geometry, in SVG user units (the picture scales to its box).
CHART_WIDTH = 360
LABEL_END = 118  # kind labels end here (text-anchor: end)
BAR_X = 124
BAR_MAX = 170
ROW = 24
BAR_HEIGHT = 15


def esc(text: str) -> str:
    """A hostile string as HTML text or a quoted attribute value."""
    return html.escape(shown(text), quote=True)


def render_html(result: AuditResult, rows_per_group: int = ROWS_PER_GROUP) -> str:
    stores = list(summary(result))
    index = {store: f"s{i}" for i, store in enumerate(stores)}
    title = f"ferryman audit {esc(result.run_id)}"
    parts = [
        "<!doctype html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n",
        '<meta name=viewport content="width=device-width, initial-scale=1">\n',
        '<meta name=color-scheme content="light dark">\n',
        f'<meta http-equiv=Content-Security-Policy content="{CONTENT_SECURITY_POLICY}">\n',
        '<meta name=referrer content="no-referrer">\n',
        f"<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        _header(result),
        _facts(result),
        _chart(result, stores),
        _summary_table(result),
        _findings(result, stores, index, rows_per_group),
        "<footer>Written by ferryman audit. The JSON and CSV reports of the same run list "
        "every finding with its full digests.</footer>\n",
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n",
    ]
    return "".join(parts)


def _header(result: AuditResult) -> str:
    if result.complete:
        verdict = '<span class="verdict ok">complete: every store was read whole</span>'
    elif result.finished is None:
        verdict = '<span class="verdict bad">incomplete: the run did not finish</span>'
    else:
        verdict = '<span class="verdict bad">incomplete: not every store was read whole</span>'
    return (
        f"<header>\n<h1>Audit <code>{esc(result.run_id)}</code></h1>\n"
        f"<p>{verdict} &middot; {_count_findings(len(result.findings))}</p>\n</header>\n"
    )


def _facts(result: AuditResult) -> str:
    facts = [
        ("run", f"<code>{esc(result.run_id)}</code>"),
        ("started", esc(result.started)),
        ("finished", esc(result.finished) if result.finished else '<span class="bad">no</span>'),
        ("checked", "every byte read (deep)" if result.deep else "listings only (sizes, digests)"),
        ("keys expected", f"{result.expected:,}"),
        ("stores", f"{len(summary(result)):,}"),
        ("resumed", "yes: continued an interrupted run" if result.resumed else "no"),
    ]
    rows = "".join(f"<dt>{name}</dt><dd>{value}</dd>\n" for name, value in facts)
    return f'<section id=run>\n<h2>Run</h2>\n<dl class="facts">\n{rows}</dl>\n</section>\n'


def _chart(result: AuditResult, stores: list[str]) -> str:
    table = summary(result)
    peak = max((table[s][k] for s in stores for k in KINDS), default=0)
    figures = "".join(_store_chart(store, table[store], peak, i) for i, store in enumerate(stores))
    legend = "".join(
        f'<li><span class="swatch k-{kind}"></span><code>{kind}</code>: {KIND_HELP[kind]}</li>'
        for kind in KINDS
    )
    return (
        "<section id=chart>\n<h2>Findings per store</h2>\n"
        '<p class="note">Bars share one scale; each is labelled with its count.</p>\n'
        f'<div class="charts">\n{figures}</div>\n<ul class="note">{legend}</ul>\n</section>\n'
    )


def _store_chart(store: str, counts: dict[str, int], peak: int, number: int) -> str:
    height = ROW * len(KINDS) + 6
    title_id = f"chart-title-{number}"
    bars = []
    for row, kind in enumerate(KINDS):
        count = counts[kind]
        y = 3 + row * ROW
        width = 0 if count == 0 or peak == 0 else max(2, round(BAR_MAX * count / peak))
        text_y = y + BAR_HEIGHT - 3
        bars.append(
            f'<g class="bar" data-kind="{kind}" data-count="{count}">'
            f'<text x="{LABEL_END}" y="{text_y}" text-anchor="end">{kind}</text>'
            f'<rect class="k-{kind}" x="{BAR_X}" y="{y}" width="{width}" height="{BAR_HEIGHT}"'
            f' rx="2"><title>{kind}: {count:,}</title></rect>'
            f'<text class="count{" zero" if count == 0 else ""}" x="{BAR_X + width + 6}"'
            f' y="{text_y}">{count:,}</text></g>'
        )
    name = esc(store)
    return (
        f'<figure class="chart" data-store="s{number}">'
        f"<figcaption>{name}<span>{counts['ok']:,} ok</span></figcaption>"
        f'<svg class="bars" viewBox="0 0 {CHART_WIDTH} {height}" role="img"'
        f' aria-labelledby="{title_id}" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{title_id}">Findings on {name}</title>'
        f'<line x1="{BAR_X}" y1="0" x2="{BAR_X}" y2="{height}"/>'
        f"{''.join(bars)}</svg></figure>\n"
    )


def _summary_table(result: AuditResult) -> str:
    reasons = incomplete_stores(result)
    head = "".join(f'<th class="n">{name}</th>' for name in COLUMNS)
    rows = []
    for store, counts in summary(result).items():
        cells = "".join(
            f'<td class="n{" zero" if counts[name] == 0 else ""}" data-v="{counts[name]}">'
            f"{counts[name]:,}</td>"
            for name in COLUMNS
        )
        reason = reasons.get(store)
        if reason is None:
            done = '<td class="good">yes</td>'
        else:
            done = f'<td class="bad">no: {esc(reason)}</td>'
        rows.append(f'<tr><td class="store">{esc(store)}</td>{cells}{done}</tr>\n')
    return (
        "<section id=summary>\n<h2>Summary</h2>\n<div class=scroll>"
        f'<table class="sortable"><thead><tr><th>store</th>{head}<th>read whole</th></tr></thead>\n'
        f"<tbody>\n{''.join(rows)}</tbody></table></div>\n</section>\n"
    )


def _findings(
    result: AuditResult, stores: list[str], index: dict[str, str], rows_per_group: int
) -> str:
    shown_rows, totals = _group(result.findings, rows_per_group)
    if not result.findings:
        return "<section id=findings>\n<h2>Findings</h2>\n<p>None.</p>\n</section>\n"
    notes = [
        f"<li><code>{kind}</code> on {esc(store)}: the first {len(shown_rows[kind][store]):,}"
        f" of {total:,} are shown</li>"
        for kind, per_store in totals.items()
        for store, total in per_store.items()
        if total > len(shown_rows[kind][store])
    ]
    note = (
        f'<p class="note">Not every finding is in this page; the JSON and CSV reports list them'
        f" all.</p>\n<ul class=note>{''.join(notes)}</ul>\n"
        if notes
        else ""
    )
    groups = [
        _kind_group(kind, shown_rows[kind], totals[kind], index) for kind in KINDS if kind in totals
    ]
    return (
        f"<section id=findings>\n<h2>Findings</h2>\n{_filters(stores, index, totals)}{note}"
        f"{''.join(groups)}</section>\n"
    )


def _group(
    findings: Iterable[Finding], limit: int
) -> tuple[dict[str, dict[str, list[Finding]]], dict[str, dict[str, int]]]:
    """Per kind and store: the first `limit` findings, and how many there are."""
    kept: dict[str, dict[str, list[Finding]]] = {}
    totals: dict[str, dict[str, int]] = {}
    for finding in findings:
        per_store = totals.setdefault(finding.kind, {})
        per_store[finding.store] = per_store.get(finding.store, 0) + 1
        rows = kept.setdefault(finding.kind, {}).setdefault(finding.store, [])
        if len(rows) < limit:
            rows.append(finding)
    return kept, totals


def _filters(stores: list[str], index: dict[str, str], totals: dict[str, dict[str, int]]) -> str:
    """The filter bar: hidden until the script shows it (nothing to filter without it)."""
    store_options = "".join(f'<option value="{index[s]}">{esc(s)}</option>' for s in stores)
    kind_options = "".join(f'<option value="{k}">{k}</option>' for k in KINDS if k in totals)
    return (
        "<div id=filters hidden>"
        f'<label>store <select id=f-store><option value="">all</option>{store_options}</select>'
        "</label>"
        f'<label>kind <select id=f-kind><option value="">all</option>{kind_options}</select>'
        "</label>"
        "<label>key contains <input id=f-text type=search autocomplete=off></label></div>\n"
    )


def _kind_group(
    kind: str, rows: dict[str, list[Finding]], totals: dict[str, int], index: dict[str, str]
) -> str:
    columns = KIND_COLUMNS.get(kind, ("actual_size",))
    head = "".join(_heading(name) for name in columns)
    body = "".join(
        _finding_row(finding, columns, index.get(finding.store, ""))
        for per_store in rows.values()
        for finding in per_store
    )
    total = sum(totals.values())
    return (
        f'<details class="kind" data-kind="{esc(kind)}" open><summary>'
        f'<span class="swatch k-{esc(kind)}"></span><code>{esc(kind)}</code> '
        f'<span class="count">{total:,} &middot; {KIND_HELP.get(kind, "")}</span></summary>\n'
        f'<div class=scroll><table class="sortable findings" data-kind="{esc(kind)}">'
        f"<thead><tr><th>key</th><th>store</th>{head}</tr></thead>\n"
        f"<tbody>\n{body}</tbody></table></div></details>\n"
    )


def _heading(name: str) -> str:
    numeric = ' class="n"' if name.endswith("size") else ""
    return f"<th{numeric}>{HEADINGS[name]}</th>"


def _finding_row(finding: Finding, columns: tuple[str, ...], store_id: str) -> str:
    cells = "".join(_cell(name, getattr(finding, name)) for name in columns)
    return (
        f'<tr data-store="{store_id}"><td class="key mono">{esc(finding.key)}</td>'
        f'<td class="store">{esc(finding.store)}</td>{cells}</tr>\n'
    )


def _cell(name: str, value: object) -> str:
    if name.endswith("size"):
        if not isinstance(value, int):
            return '<td class="n zero" data-v="-1">&ndash;</td>'
        return f'<td class="n" data-v="{value}">{value:,}</td>'
    if value is None or value == "":
        return '<td class="zero">&ndash;</td>'
    text = str(value)
    if name.endswith("sha256"):
        short = esc(text[:DIGEST_SHOWN]) + ("&hellip;" if len(text) > DIGEST_SHOWN else "")
        return f'<td><code title="{esc(text)}">{short}</code></td>'
    return f"<td>{esc(text)}</td>"


def _count_findings(count: int) -> str:
    return "1 finding" if count == 1 else f"{count:,} findings"
