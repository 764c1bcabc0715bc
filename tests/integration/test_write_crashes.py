"""Writes interrupted by SIGKILL: nothing left behind, and nothing the catalog gets wrong.

A worker killed mid-upload leaves a temporary beside the file; the arbiter
removes it as soon as it replaces the worker. A worker killed between the
rename (or the unlink, or the store's upload) and the catalog record leaves an
intent in the catalog; the next worker settles it by looking at the store.
The kill is real: SIGKILL from outside, or from the test hook that kills the
worker when it reaches its catalog record (supervisor/hooks.py).
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.rawhttp import request_bytes
from tests.s3server import MotoServer
from tests.serverproc import ServerProcess, pattern, wait_until
from tests.writing import (
    Writable,
    bearer,
    catalog_entry,
    catalog_intents,
    delete,
    put,
    repr_digest,
    upload_temporaries,
)

KILL_AT_RECORD = {
    "FERRYMAN_TEST_HOOKS": "1",
    "FERRYMAN_TEST_KILL_BEFORE_RECORD": "1",
    "FERRYMAN_TEST_HOOK_SPAWNS": "1",  # the replacement is healthy and settles
}


def replaced(srv: ServerProcess, old: int) -> bool:
    """The worker `old` is gone and a new one reported ready."""
    pids = srv.child_pids()
    return old not in pids and bool(pids) and srv.log_text().count("ready (") >= 2


def test_a_worker_killed_mid_upload_leaves_no_temporary(writable: Writable, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "in").mkdir(parents=True)
    srv = writable(root=root)  # --body-timeout stays 60 s
    [worker] = srv.child_pids()
    with srv.connect() as conn:
        head = request_bytes("PUT", "/in/big.bin", {**bearer(), "Content-Length": "2000000"})
        conn.send(head + pattern(600_000))
        assert wait_until(lambda: len(upload_temporaries(root)) == 1, 10)
        os.kill(worker, signal.SIGKILL)
        assert conn.closed_by_peer(10)
    assert wait_until(lambda: replaced(srv, worker), 15)
    # Removed by the arbiter when it replaced the worker, not two body timeouts later.
    assert wait_until(lambda: not upload_temporaries(root), 5), upload_temporaries(root)
    assert f"left by worker pid {worker}" in srv.log_text()
    assert os.listdir(tmp_path / "state" / "staging") == []
    assert not (root / "in" / "big.bin").exists()
    assert catalog_entry(tmp_path / "state", "in/big.bin") is None
    assert put(srv, "/in/big.bin", b"whole").status == 201


def test_temporaries_of_a_killed_server_go_at_its_next_start(
    writable: Writable, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    srv = writable(root=root)
    pids = [srv.proc.pid, *srv.child_pids()]
    with srv.connect() as conn:
        head = request_bytes("PUT", "/half.bin", {**bearer(), "Content-Length": "2000000"})
        conn.send(head + pattern(300_000))
        assert wait_until(lambda: len(upload_temporaries(root)) == 1, 10)
        for pid in pids:  # the whole server at once: nobody is left to sweep
            os.kill(pid, signal.SIGKILL)
    srv.proc.wait(10)
    assert len(upload_temporaries(root)) == 1
    again = writable(root=root)
    assert not upload_temporaries(root)
    assert "removed 1 upload temporary" in again.log_text()


def test_a_put_killed_before_its_record_is_recorded_at_the_next_start(
    writable: Writable, tmp_path: Path
) -> None:
    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir()
    (root / "a.bin").write_bytes(b"old version")
    data = pattern(200_000)
    srv = writable(root=root, env=KILL_AT_RECORD)
    [first] = srv.child_pids()
    with pytest.raises((ConnectionError, OSError, AssertionError)):
        put(srv, "/a.bin", data)  # the worker dies after the rename: no answer
    assert (root / "a.bin").read_bytes() == data  # renamed into place ...
    assert wait_until(lambda: replaced(srv, first), 15)
    # ... and the replacement, before it served, recorded what was on disk.
    entry = catalog_entry(state, "a.bin")
    assert entry is not None and not entry.deleted
    assert (entry.size, entry.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert catalog_intents(state) == []
    assert "settled an interrupted PUT of a.bin: it is in place" in srv.log_text()
    with srv.connect() as conn:
        got = conn.get("/a.bin")
    assert got.body == data and got.header("repr-digest") == repr_digest(data)
    assert got.header("etag") == entry.etag
    assert not upload_temporaries(root)


def test_a_delete_killed_before_its_record_is_recorded_at_the_next_start(
    writable: Writable, tmp_path: Path
) -> None:
    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir()
    first = writable(root=root)
    assert put(first, "/gone.bin", b"bytes").status == 201
    first.stop()
    srv = writable(root=root, env=KILL_AT_RECORD)
    [worker] = srv.child_pids()
    with pytest.raises((ConnectionError, OSError, AssertionError)):
        delete(srv, "/gone.bin")
    assert not (root / "gone.bin").exists()
    assert wait_until(lambda: replaced(srv, worker), 15)
    entry = catalog_entry(state, "gone.bin")
    assert entry is not None and entry.deleted
    assert catalog_intents(state) == []
    assert delete(srv, "/gone.bin").status == 404


def test_an_intent_whose_change_did_not_happen_is_dropped(
    writable: Writable, tmp_path: Path
) -> None:
    """A PUT killed after its intent but before its rename: the old file stays, the
    catalog keeps the old version, the temporary goes."""
    from ferryman.catalog.db import Intent, SqliteCatalog

    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir()
    first = writable(root=root)
    assert put(first, "/k.bin", b"kept").status == 201
    first.stop()
    temp = root / ".ferryman-upload-999999-00000000deadbeef"
    temp.write_bytes(b"never committed")
    st = temp.stat()
    with SqliteCatalog(state / "catalog.db") as catalog:
        before = catalog.get("k.bin")
        sha = hashlib.sha256(b"never committed").hexdigest()
        catalog.begin(Intent("k.bin", "put", f"{st.st_dev}:{st.st_ino}", 15, sha, temp.name))
    srv = writable(root=root)
    assert catalog_intents(state) == []
    assert catalog_entry(state, "k.bin") == before
    assert (root / "k.bin").read_bytes() == b"kept" and not temp.exists()
    assert "settled an interrupted PUT of k.bin: it did not happen" in srv.log_text()


def test_an_intent_of_a_live_write_is_left_to_it(writable: Writable, tmp_path: Path) -> None:
    """Settling skips a key whose write lock is held (a write in progress elsewhere)."""
    from ferryman.app.writelock import lock_offset
    from ferryman.catalog.db import Intent, SqliteCatalog

    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir()
    state.mkdir()
    with SqliteCatalog(state / "catalog.db") as catalog:
        catalog.begin(Intent("busy.bin", "delete", "1:1"))
    holder = os.open(state / "locks", os.O_RDWR | os.O_CREAT, 0o600)
    import fcntl

    fcntl.lockf(holder, fcntl.LOCK_EX, 1, lock_offset("busy.bin"), os.SEEK_SET)
    try:
        writable(root=root)
        assert [i.path for i in catalog_intents(state)] == ["busy.bin"]
    finally:
        os.close(holder)


def test_a_store_put_killed_before_its_record_is_recorded_at_the_next_start(
    writable: Writable, tmp_path: Path, moto_server: MotoServer, s3_bucket: str
) -> None:
    data = pattern(100_000)
    srv = writable(root=f"s3://{s3_bucket}", s3_endpoint=moto_server.url, env=KILL_AT_RECORD)
    [first] = srv.child_pids()
    with pytest.raises((ConnectionError, OSError, AssertionError)):
        put(srv, "/obj.bin", data)
    assert wait_until(lambda: replaced(srv, first), 15)
    entry = catalog_entry(tmp_path / "state", "obj.bin")
    assert entry is not None and entry.sha256 == hashlib.sha256(data).hexdigest()
    got = srv.get("/obj.bin")
    assert got.body == data and got.header("etag") == entry.etag


def test_a_catalog_that_cannot_take_the_intent_stores_nothing(
    writable: Writable, tmp_path: Path
) -> None:
    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir()
    srv = writable(root=root)
    assert put(srv, "/f.bin", b"one").status == 201
    holder = sqlite3.connect(state / "catalog.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        r = put(srv, "/f.bin", b"two")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.status == 503 and r.header("retry-after") == "1", r.body
    assert (root / "f.bin").read_bytes() == b"one"
    entry = catalog_entry(state, "f.bin")
    assert entry is not None and entry.sha256 == hashlib.sha256(b"one").hexdigest()
    assert not upload_temporaries(root)
