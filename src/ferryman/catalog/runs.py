"""Audit and repair runs, how far each got and what each found (schema v5).

A run is named by a random id and described by its options (JSON: the
stores, the expected set, --deep...). Starting a run with the same options as
one that never finished continues that one.

A run checks each store's keys in code-point order, so how far it got is one
key per store (`run_stores.through`), kept with the number of copies found
fine; only a finding gets a row of its own (`run_findings`). A run killed
with SIGKILL and started again skips every key up to `through`, so it reads
none of those copies again, and what it records grows with its findings, not
with the size of the store. The progress, the findings and the copies'
verifications (copies.py) of a batch land in one transaction: all or none.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ferryman.catalog.api import READ, SINGLE, WRITE, Catalog
from ferryman.catalog.copies import CopyEvent, note_events

KINDS = ("audit", "repair")
PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    kind: str
    options: dict[str, Any]
    started_ns: int
    finished_ns: int | None
    resumed: bool = False  # this start continues an earlier, unfinished one


@dataclass(frozen=True, slots=True)
class Check:
    """What a run found wrong with one key in one store: `result` is a finding kind."""

    store: str
    path: str
    result: str
    expected_size: int | None = None
    expected_sha256: str | None = None
    actual_size: int | None = None
    actual_sha256: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class StoreProgress:
    """How far a run got in one store: the last key it checked (None: none yet), and
    how many copies up to there were fine."""

    through: str | None
    ok: int


@dataclass(frozen=True, slots=True)
class StoreSummary:
    """A run in one store, as `ferryman catalog runs` shows it."""

    store: str
    through: str | None
    ok: int
    findings: int


@dataclass(frozen=True, slots=True)
class RunSummary:
    run: Run
    stores: tuple[StoreSummary, ...]


def _options_text(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True, separators=(",", ":"))


class Runs:
    """The runs of a catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def start(self, kind: str, options: dict[str, Any]) -> Run:
        """A new run, or the unfinished run of this kind with exactly these options."""
        if kind not in KINDS:
            raise ValueError(f"run kind {kind!r} is not one of {KINDS}")
        text = _options_text(options)
        with self.catalog.use(WRITE) as conn:
            row = conn.execute(
                "SELECT id, started_ns FROM runs WHERE kind = ? AND options = ?"
                " AND finished_ns IS NULL ORDER BY started_ns DESC LIMIT 1",
                (kind, text),
            ).fetchone()
            if row is not None:
                return Run(row[0], kind, options, row[1], None, resumed=True)
            run_id = secrets.token_hex(8)
            now = time.time_ns()
            conn.execute(
                "INSERT INTO runs (id, kind, options, started_ns) VALUES (?, ?, ?, ?)",
                (run_id, kind, text, now),
            )
        return Run(run_id, kind, options, now, None)

    def record(
        self,
        run: Run,
        store: str,
        progress: StoreProgress,
        findings: Iterable[Check] = (),
        notes: Iterable[CopyEvent] = (),
    ) -> None:
        """Record how far the run got in `store`, what it found on the way, and the
        copies' verifications, in one transaction."""
        rows = [(run.id, c.store, c.path, c.result, c.expected_size, c.expected_sha256,
                 c.actual_size, c.actual_sha256, c.detail) for c in findings]  # fmt: skip
        if any(row[3] == "ok" for row in rows):
            raise ValueError("a run records findings only; fine copies are counted")
        batch = list(notes)
        with self.catalog.use(WRITE) as conn:
            conn.execute(
                "INSERT INTO run_stores (run, store, through, ok) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (run, store) DO UPDATE SET through = excluded.through,"
                " ok = excluded.ok",
                (run.id, store, progress.through, progress.ok),
            )
            conn.executemany(
                "INSERT INTO run_findings (run, store, path, result, expected_size,"
                " expected_sha256, actual_size, actual_sha256, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run, store, path) DO UPDATE"
                " SET result = excluded.result, expected_size = excluded.expected_size,"
                " expected_sha256 = excluded.expected_sha256, actual_size = excluded.actual_size,"
                " actual_sha256 = excluded.actual_sha256, detail = excluded.detail",
                rows,
            )
            note_events(conn, batch)

    def finish(self, run: Run) -> int:
        """Mark the run finished; returns when (time.time_ns())."""
        now = time.time_ns()
        with self.catalog.use(WRITE) as conn:
            conn.execute("UPDATE runs SET finished_ns = ? WHERE id = ?", (now, run.id))
        return now

    def progress(self, run: Run, store: str) -> StoreProgress:
        """How far the run got in `store`: nothing yet is StoreProgress(None, 0)."""
        with self.catalog.use(SINGLE) as conn:
            row = conn.execute(
                "SELECT through, ok FROM run_stores WHERE run = ? AND store = ?", (run.id, store)
            ).fetchone()
        return StoreProgress(row[0], row[1]) if row is not None else StoreProgress(None, 0)

    def recent(self, limit: int = 20) -> list[RunSummary]:
        """The latest `limit` runs, newest first, with how far each got in each store and
        what it found there: what any server on the catalog can show of a run in progress."""
        with self.catalog.use(READ) as conn:
            runs = conn.execute(
                "SELECT id, kind, options, started_ns, finished_ns FROM runs"
                " ORDER BY started_ns DESC, id LIMIT ?",
                (limit,),
            ).fetchall()
            summaries = []
            for run_id, kind, options, started, finished in runs:
                found = dict(conn.execute(
                    "SELECT store, COUNT(*) FROM run_findings WHERE run = ? GROUP BY store",
                    (run_id,),
                ).fetchall())  # fmt: skip
                progress = conn.execute(
                    "SELECT store, through, ok FROM run_stores WHERE run = ? ORDER BY store",
                    (run_id,),
                ).fetchall()
                stores = [
                    StoreSummary(st, through, ok, found.pop(st, 0)) for st, through, ok in progress
                ]
                stores += [StoreSummary(st, None, 0, n) for st, n in sorted(found.items())]
                run = Run(run_id, kind, json.loads(options), started, finished)
                summaries.append(RunSummary(run, tuple(stores)))
        return summaries

    def findings(self, run: Run) -> Iterator[Check]:
        """Every finding of the run, by store and path, a page at a time."""
        after = ("", "")
        while True:
            with self.catalog.use(SINGLE) as conn:
                rows = conn.execute(
                    "SELECT store, path, result, expected_size, expected_sha256, actual_size,"
                    " actual_sha256, detail"
                    " FROM run_findings WHERE run = ? AND (store, path) > (?, ?)"
                    " ORDER BY store, path LIMIT ?",
                    (run.id, *after, PAGE_SIZE),
                ).fetchall()
            yield from (Check(*row) for row in rows)
            if len(rows) < PAGE_SIZE:
                return
            after = (rows[-1][0], rows[-1][1])
