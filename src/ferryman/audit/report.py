"""What an audit shows: JSON, CSV and HTML reports, and the summary printed at the end.

Pure renderers of an AuditResult (model.py), plus write_report, which picks
the format by the file's extension and writes it atomically. Keys and store
names come from stores anyone may have written to, so every renderer treats
them as hostile: the JSON and CSV keep them exactly (only what UTF-8 cannot
hold is escaped), the text summary escapes control and invisible characters
so a name cannot move the terminal's cursor, and the HTML page escapes
everything (htmlreport.py).
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

from ferryman.audit.htmlreport import render_html
from ferryman.audit.model import KINDS, AuditResult, Finding
from ferryman.audit.reportview import incomplete_stores, shown, summary, utf8_safe
from ferryman.errors import ConfigError

__all__ = [
    "FORMATS",
    "incomplete_stores",
    "render_csv",
    "render_html",
    "render_json",
    "render_text",
    "report_format",
    "shown",
    "summary",
    "utf8_safe",
    "write_report",
]

FINDING_FIELDS = (
    "key",
    "store",
    "kind",
    "expected_size",
    "actual_size",
    "expected_sha256",
    "actual_sha256",
)
# The CSV adds why a key was unreadable (an error message); the JSON schema has no room for it.
CSV_FIELDS = (*FINDING_FIELDS, "detail")
TEXT_EXAMPLES = 3  # keys named per kind in the text summary
TEXT_KEY_CHARS = 60  # a longer key is cut in the text summary (the reports have it whole)


# -- JSON and CSV ----------------------------------------------------------------------


def _finding_record(finding: Finding) -> dict[str, object]:
    return {name: getattr(finding, name) for name in FINDING_FIELDS}


def render_json(result: AuditResult) -> str:
    """The report for scripts.

    The schema's fields, plus two that add to it without changing any:
    "resumed" in "run", and "incomplete" ({store: reason}, empty when every
    store was read whole).
    """
    document = {
        "run": {
            "id": result.run_id,
            "started": result.started,
            "finished": result.finished,
            "deep": result.deep,
            "complete": result.complete,
            "resumed": result.resumed,
        },
        "stores": list(result.stores),
        "expected": result.expected,
        "summary": summary(result),
        "incomplete": incomplete_stores(result),
    }
    # "findings" comes last, one finding a line: a report of 100,000 stays greppable.
    head = json.dumps(document, ensure_ascii=False, indent=1)
    rows = ",\n".join(
        "  " + json.dumps(_finding_record(f), ensure_ascii=False) for f in result.findings
    )
    findings = f'"findings": [\n{rows}\n ]' if rows else '"findings": []'
    # Non-ASCII stays readable; a lone surrogate becomes the JSON escape "\udcXX".
    return utf8_safe(f"{head[:-2]},\n {findings}\n}}\n")


def render_csv(result: AuditResult) -> str:
    """One row per finding under a header row; RFC 4180 quoting, CRLF line ends."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(CSV_FIELDS)
    for finding in result.findings:
        writer.writerow(_csv_cell(getattr(finding, name)) for name in CSV_FIELDS)
    return out.getvalue()


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    return utf8_safe(str(value))


# -- the text summary ------------------------------------------------------------------


def render_text(result: AuditResult) -> str:
    """The summary for stdout: a line about the run, a table per store, examples per kind."""
    lines = [_run_line(result), ""]
    lines += _table_lines(result)
    by_kind = _findings_by_kind(result.findings)
    if by_kind:
        lines.append("")
        width = max(len(kind) for kind in by_kind)
        for kind in KINDS:
            if kind in by_kind:
                lines.append(_kind_line(kind, *by_kind[kind], width))
    return "\n".join(lines) + "\n"


def _run_line(result: AuditResult) -> str:
    mode = "deep (every byte read)" if result.deep else "listing only"
    when = f"finished {result.finished}" if result.finished else "not finished"
    resumed = ", resumed" if result.resumed else ""
    state = "complete" if result.complete else "INCOMPLETE"
    return (
        f"audit {shown(result.run_id)}: {result.expected:,} keys expected, {mode}{resumed}; "
        f"started {result.started}, {when}; {state}; {_findings(len(result.findings))}"
    )


def _table_lines(result: AuditResult) -> list[str]:
    reasons = incomplete_stores(result)
    header = ["store", "ok", *KINDS, "complete"]
    rows = []
    for store, counts in summary(result).items():
        reason = reasons.get(store)
        done = "yes" if reason is None else f"no: {shown(reason, 200)}"
        rows.append([shown(store), *(f"{counts[name]:,}" for name in ("ok", *KINDS)), done])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    numeric = range(1, len(header) - 1)

    def line(cells: list[str]) -> str:
        padded = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(padded).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]


def _findings_by_kind(findings: Iterable[Finding]) -> dict[str, tuple[int, list[Finding]]]:
    """Each kind's count and its first few findings, in the order found."""
    counts: dict[str, int] = {}
    examples: dict[str, list[Finding]] = {}
    for finding in findings:
        counts[finding.kind] = counts.get(finding.kind, 0) + 1
        kept = examples.setdefault(finding.kind, [])
        if len(kept) < TEXT_EXAMPLES:
            kept.append(finding)
    return {kind: (counts[kind], examples[kind]) for kind in counts}


def _kind_line(kind: str, count: int, examples: list[Finding], width: int) -> str:
    named = ", ".join(
        f"{shown(f.key, TEXT_KEY_CHARS)} ({shown(f.store, TEXT_KEY_CHARS)})" for f in examples
    )
    more = ", ..." if count > len(examples) else ""
    return f"{kind.ljust(width)}  {count:>9,}  e.g. {named}{more}"


# -- writing a report file -------------------------------------------------------------

FORMATS: dict[str, Callable[[AuditResult], str]] = {
    ".json": render_json,
    ".csv": render_csv,
    ".html": render_html,
}


def report_format(path: str | os.PathLike[str]) -> Callable[[AuditResult], str]:
    """The renderer for `path`'s extension; ConfigError for any other (checked before a run)."""
    suffix = Path(path).suffix
    render = FORMATS.get(suffix.lower())
    if render is None:
        shown_suffix = repr(suffix) if suffix else "no extension"
        raise ConfigError(
            f"report {shown(os.fspath(path))}: {shown_suffix} is not a report format "
            f"(use {', '.join(FORMATS)})"
        )
    return render


def write_report(path: str | os.PathLike[str], result: AuditResult) -> None:
    """Render `result` in the format `path` names and replace `path` with it, whole or not at all.

    A temporary file beside it is written, fsync'ed and renamed over it, then
    the directory is fsync'ed: a crash leaves the old report or the new one.
    An OSError becomes a ConfigError naming the path (the temporary is removed).
    """
    render = report_format(path)
    data = render(result).encode("utf-8")
    target = Path(path)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        _write_synced(temp, data)
        os.replace(temp, target)
        _sync_directory(target.parent)
    except OSError as exc:
        _remove_quietly(temp)
        raise ConfigError(
            f"cannot write the report {shown(str(target))}: {exc.strerror or exc}"
        ) from None


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass  # the error that matters is the one being raised


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _findings(count: int) -> str:
    return "1 finding" if count == 1 else f"{count:,} findings"
