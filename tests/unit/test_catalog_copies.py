"""The catalog's copies (per key and store, with an append-only event log) and its runs,
on each backend (the `catalog` fixture) where nothing SQLite's own is involved."""

from __future__ import annotations

import hashlib
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from ferryman.catalog import Catalog, CatalogError, SqliteCatalog
from ferryman.catalog.api import WRITE
from ferryman.catalog.copies import (
    KNOWN_IDENT,
    KNOWN_RESULT,
    KNOWN_SHA256,
    KNOWN_SIZE,
    KNOWN_STATE,
    KNOWN_VERIFIED_NS,
    Copies,
    CopyEvent,
)
from ferryman.catalog.runs import Check, Runs, StoreProgress


def sha(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


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
    for statement in ("UPDATE copy_events SET event = 'written'", "DELETE FROM copy_events"):
        with pytest.raises(CatalogError, match="append-only"), catalog.use(WRITE) as tx:
            tx.execute(statement)  # the database itself refuses it, not only ferryman's code
    assert len(copies.events("k")) == 5


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


def test_what_is_known_of_a_store_is_every_copy_in_it_and_no_other(catalog: Catalog) -> None:
    names = ["b", "a/z", "a-c", "é", "a", "Z", "a/b/c"]
    Copies(catalog).note(CopyEvent(n, "S", "written", 1, sha(1), "i") for n in names)
    Copies(catalog).note([CopyEvent("other", "T", "written", 2, sha(2), "j")])
    Copies(catalog).note(
        [CopyEvent("b", "S", "verified", 1, None, "i2", "size_mismatch", "listing")]
    )
    known = Copies(catalog).known("S")
    assert sorted(known) == sorted(names)
    a, b = known["a"], known["b"]
    assert a[0] == "a" and a[KNOWN_SHA256] == sha(1) and a[KNOWN_STATE] == "present"
    assert (a[KNOWN_SIZE], a[KNOWN_IDENT], a[KNOWN_RESULT]) == (1, "i", "ok")
    assert b[KNOWN_IDENT] == "i2" and b[KNOWN_RESULT] == "size_mismatch"
    assert b[KNOWN_SHA256] is None  # another version: its digest is not carried over
    assert a[KNOWN_VERIFIED_NS] is not None  # a verified write
    assert b[KNOWN_VERIFIED_NS] is None  # a listing of another version hashed nothing


def test_an_unfinished_run_with_the_same_options_is_continued(catalog: Catalog) -> None:
    runs = Runs(catalog)
    options = {"stores": ["/a", "s3://b"], "deep": True}
    first = runs.start("audit", options)
    assert not first.resumed
    assert runs.progress(first, "/a") == StoreProgress(None, 0)
    runs.record(first, "/a", StoreProgress("k2", 1), [Check("/a", "k2", "missing")],
                [CopyEvent("k1", "/a", "verified", 1, sha(1), "i", "ok", "read")])  # fmt: skip
    runs.record(first, "/a", StoreProgress("k4", 2), [Check("/a", "k3", "zero_byte")])
    again = runs.start("audit", {"deep": True, "stores": ["/a", "s3://b"]})  # any key order
    assert again.resumed and again.id == first.id
    assert runs.progress(again, "/a") == StoreProgress("k4", 2)
    assert runs.progress(again, "s3://b") == StoreProgress(None, 0)
    other = runs.start("audit", {"stores": ["/a"], "deep": True})
    assert other.id != first.id and not other.resumed
    runs.finish(again)
    assert not runs.start("audit", options).resumed  # finished: a new run
    assert [(c.path, c.result) for c in runs.findings(first)] == [
        ("k2", "missing"),
        ("k3", "zero_byte"),
    ]
    with pytest.raises(ValueError, match="findings only"):
        runs.record(first, "/a", StoreProgress("k5", 3), [Check("/a", "k5", "ok")])
    [copy] = Copies(catalog).of_path("k1")
    assert copy.result == "ok" and copy.verified_ns is not None


def test_a_run_recorded_key_by_key_is_carried_into_per_store_progress(tmp_path: Path) -> None:
    """Schema v5: an unfinished run of a v4 catalog (one row per key checked) becomes its
    progress per store (the last key, the fine copies counted) and its findings."""
    from ferryman.catalog.schema import MIGRATIONS, statements

    path = tmp_path / "catalog.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        for script in MIGRATIONS[:4]:
            for statement in statements(script):
                conn.execute(statement)
        conn.execute("UPDATE meta SET value = 4 WHERE key = 'schema_version'")
        conn.execute("INSERT INTO runs VALUES ('r1', 'audit', '{}', 1, NULL)")
        conn.executemany(
            "INSERT INTO run_checks (run, store, path, result) VALUES ('r1', ?, ?, ?)",
            [("/a", "k1", "ok"), ("/a", "k3", "missing"), ("/a", "k2", "ok"), ("/b", "k1", "ok")],
        )
    with SqliteCatalog(path) as catalog:
        runs = Runs(catalog)
        run = runs.start("audit", {})
        assert run.resumed and run.id == "r1"
        assert runs.progress(run, "/a") == StoreProgress("k3", 2)
        assert runs.progress(run, "/b") == StoreProgress("k1", 1)
        assert [(c.store, c.path, c.result) for c in runs.findings(run)] == [
            ("/a", "k3", "missing")
        ]
