"""The runs any server on a catalog can list: newest first, how far each got in each
store, what it found there (both backends)."""

from __future__ import annotations

from ferryman.audit.catalog_command import run_lines
from ferryman.catalog import Catalog
from ferryman.catalog.runs import Check, Runs, StoreProgress, StoreSummary


def test_recent_runs_show_each_stores_progress_and_findings(catalog: Catalog) -> None:
    runs = Runs(catalog)
    first = runs.start("audit", {"stores": ["/srv", "s3://b"]})
    runs.record(first, "/srv", StoreProgress("z/last", 10))
    runs.finish(first)
    second = runs.start("repair", {"stores": ["/srv"]})
    runs.record(second, "/srv", StoreProgress("m/mid", 4),
                [Check("/srv", "a", "missing"), Check("/srv", "b", "size_mismatch")])  # fmt: skip
    runs.record(second, "s3://b", StoreProgress("c", 2), [Check("s3://b", "c", "unexpected")])
    listed = runs.recent()
    assert [s.run.id for s in listed] == [second.id, first.id]
    assert listed[0].run.finished_ns is None and listed[1].run.finished_ns is not None
    assert listed[0].stores == (
        StoreSummary("/srv", "m/mid", 4, 2),
        StoreSummary("s3://b", "c", 2, 1),
    )
    assert listed[1].stores == (StoreSummary("/srv", "z/last", 10, 0),)
    assert listed[1].run.options == {"stores": ["/srv", "s3://b"]}
    assert [s.run.id for s in runs.recent(1)] == [second.id]


def test_a_run_prints_as_one_line_and_one_per_store(catalog: Catalog) -> None:
    runs = Runs(catalog)
    run = runs.start("audit", {"x": 1})
    runs.record(run, "/srv/files", StoreProgress("photos/x.jpg", 12345),
                [Check("/srv/files", "a", "missing")])  # fmt: skip
    lines = run_lines(runs.recent()[0])
    assert lines[0].startswith(f"audit {run.id}  started ") and lines[0].endswith("unfinished")
    assert lines[1] == "  /srv/files  through photos/x.jpg  (12,345 fine, 1 finding)"
    runs.finish(run)
    assert " finished " in run_lines(runs.recent()[0])[0]
