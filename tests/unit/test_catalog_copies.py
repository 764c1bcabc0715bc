"""The catalog's copies (per key and store, with an append-only event log) and its runs."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.catalog import Catalog
from ferryman.catalog.copies import Copies, CopyEvent
from ferryman.catalog.runs import Check, Runs


def sha(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    with Catalog(tmp_path / "catalog.db") as cat:
        yield cat


def test_a_write_and_its_copies_land_in_one_transaction(catalog: Catalog) -> None:
    copies = Copies(catalog)
    written = [CopyEvent("a/b", "/srv/main", "written", 3, sha(3), "7:1:1"),
               CopyEvent("a/b", "s3://rep", "written", 3, sha(3), '"e1"')]  # fmt: skip
    catalog.record("a/b", size=3, sha256=sha(3), mtime_ns=1, etag='"e"', copies=written)
    states = copies.of_path("a/b")
    assert [(c.store, c.state, c.result, c.ident) for c in states] == [
        ("/srv/main", "present", "ok", "7:1:1"),
        ("s3://rep", "present", "ok", '"e1"'),
    ]
    assert all(c.verified_ns is not None for c in states)
    with pytest.raises(ValueError):  # a bad event leaves nothing: neither record nor copy
        catalog.record("c", size=1, sha256=sha(1), mtime_ns=1, etag='"e"',
                       copies=[CopyEvent("c", "/srv/main", "exploded")])  # fmt: skip
    assert catalog.get("c") is None and copies.of_path("c") == []


def test_events_are_logged_in_order_and_never_change(catalog: Catalog, tmp_path: Path) -> None:
    copies = Copies(catalog)
    copies.note([CopyEvent("k", "S", "written", 1, sha(1), "i1")])
    copies.note([CopyEvent("k", "S", "verified", 0, None, "i2", "zero_byte")])
    copies.note([CopyEvent("k", "S", "repaired", 1, sha(1), "i3")])
    copies.note([CopyEvent("k", "S", "write_failed", None, None, None, "timeout")])
    catalog.mark_deleted("k", copies=[CopyEvent("k", "S", "deleted")])
    assert [e.event for e in copies.events("k")] == [
        "written", "verified", "repaired", "write_failed", "deleted",
    ]  # fmt: skip
    [state] = copies.of_path("k")
    assert state.state == "deleted"
    with sqlite3.connect(tmp_path / "catalog.db") as raw:
        for statement in ("UPDATE copy_events SET event = 'written'", "DELETE FROM copy_events"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                raw.execute(statement)


def test_a_digest_and_its_time_carry_over_only_while_the_copy_is_the_same(
    catalog: Catalog,
) -> None:
    copies = Copies(catalog)
    copies.note([CopyEvent("k", "S", "written", 5, sha(5), "i1")])
    [written] = copies.of_path("k")
    copies.note([CopyEvent("k", "S", "verified", 5, None, "i1", "ok", "listing")])
    [state] = copies.of_path("k")
    assert (state.sha256, state.result, state.verified_ns) == (sha(5), "ok", written.verified_ns)
    copies.note([CopyEvent("k", "S", "verified", 5, None, "i2", "ok", "listing")])  # changed
    [state] = copies.of_path("k")
    assert (state.sha256, state.verified_ns, state.ident) == (None, None, "i2")
    copies.note([CopyEvent("k", "S", "verified", 5, sha(6), "i2", "digest_mismatch", "read")])
    [state] = copies.of_path("k")
    assert state.sha256 == sha(6) and state.verified_ns is not None
    copies.note([CopyEvent("k", "S", "verified", None, None, None, "missing", "listing")])
    [state] = copies.of_path("k")
    assert (state.state, state.result) == ("deleted", "missing")


def test_copies_of_a_store_come_in_path_order_across_pages(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ferryman.catalog import copies as module

    monkeypatch.setattr(module, "PAGE_SIZE", 3)
    names = ["b", "a/z", "a-c", "é", "a", "Z", "a/b/c"]
    Copies(catalog).note(CopyEvent(n, "S", "written", 1, sha(1), "i") for n in names)
    Copies(catalog).note([CopyEvent("other", "T", "written", 1, sha(1), "i")])
    assert [c.path for c in Copies(catalog).of_store("S")] == sorted(names)


def test_an_unfinished_run_with_the_same_options_is_continued(catalog: Catalog) -> None:
    runs = Runs(catalog)
    options = {"stores": ["/a", "s3://b"], "deep": True}
    first = runs.start("audit", options)
    assert not first.resumed
    runs.record(first, [Check("/a", "k1", "ok"), Check("/a", "k2", "missing")],
                [CopyEvent("k1", "/a", "verified", 1, sha(1), "i", "ok", "read")])  # fmt: skip
    again = runs.start("audit", {"deep": True, "stores": ["/a", "s3://b"]})  # any key order
    assert again.resumed and again.id == first.id
    assert runs.checked(again, "/a") == {"k1", "k2"} and runs.checked(again, "s3://b") == set()
    other = runs.start("audit", {"stores": ["/a"], "deep": True})
    assert other.id != first.id and not other.resumed
    runs.finish(again)
    assert not runs.start("audit", options).resumed  # finished: a new run
    assert [(c.path, c.result) for c in runs.checks(first)] == [("k1", "ok"), ("k2", "missing")]
    [copy] = Copies(catalog).of_path("k1")
    assert copy.result == "ok" and copy.verified_ns is not None
