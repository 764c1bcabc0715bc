"""What every audit report shows of a result, and how a hostile name is made safe to show.

Shared by report.py (JSON, CSV, text) and htmlreport.py. Pure.
"""

from __future__ import annotations

from ferryman.audit.model import KINDS, AuditResult

NOT_AUDITED = "not audited"
STOPPED = "stopped before the end"
COLUMNS = ("ok", *KINDS)  # a summary row's counts, in this order


def audited_stores(result: AuditResult) -> list[str]:
    """The stores as given, then any store that has a tally but was not in the list."""
    extra = [store for store in result.tallies if store not in result.stores]
    return [*result.stores, *extra]


def summary(result: AuditResult) -> dict[str, dict[str, int]]:
    """Per store: "ok" and every kind, each present (zero when none)."""
    table: dict[str, dict[str, int]] = {}
    for store in audited_stores(result):
        tally = result.tallies.get(store)
        counts = tally.counts if tally is not None else {}
        table[store] = {name: counts.get(name, 0) for name in COLUMNS}
    return table


def incomplete_stores(result: AuditResult) -> dict[str, str]:
    """Why each store that was not read whole was not: its error, or that the run stopped."""
    reasons: dict[str, str] = {}
    for store in audited_stores(result):
        tally = result.tallies.get(store)
        if tally is None:
            reasons[store] = NOT_AUDITED
        elif not tally.complete:
            reasons[store] = tally.error or STOPPED
    return reasons


def utf8_safe(text: str) -> str:
    """`text`, with any lone surrogate (an undecodable byte of a file name) as a \\udcXX escape.

    Everything else is kept exactly; only what UTF-8 cannot encode changes.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def shown(text: str, limit: int | None = None) -> str:
    """`text` for a reader: control, invisible and bidirectional characters escaped; cut.

    A key may hold an escape sequence (it would move a terminal's cursor), a
    newline (a forged line), or U+202E (text shown reversed); each is shown
    as its escape instead (\\x1b, \\n, \\u202e). Lone surrogates too.
    """
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
