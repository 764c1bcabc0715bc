"""`ferryman catalog import|scan|show|migrate` on real directories and catalogs."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from ferryman.catalog.schema import LATEST
from tests.serverproc import pattern
from tests.writing import repr_digest


def catalog(*args: str) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "ferryman.cli", "catalog", *args],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def test_import_verifies_each_copy_and_a_server_serves_the_digests(
    ferryman: Any, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    good, changed = pattern(20_000), pattern(5_000, 3)
    (root / "good.bin").write_bytes(good)
    (root / "changed.bin").write_bytes(changed)
    md5_only = b"known by its md5"
    (root / "md5.bin").write_bytes(md5_only)
    inventory = tmp_path / "inventory.csv"
    inventory.write_text(
        "path,size,sha256,md5\n"
        f"good.bin,{len(good)},{hashlib.sha256(good).hexdigest()},\n"
        f"changed.bin,{len(changed)},{hashlib.sha256(b'other').hexdigest()},\n"
        f"md5.bin,,,{hashlib.md5(md5_only).hexdigest()}\n"
        f"gone.bin,3,{hashlib.sha256(b'abc').hexdigest()},\n"
    )
    state = tmp_path / "state"
    status, out, err = catalog("import", str(root), "--inventory", str(inventory),
                               "--state-dir", str(state))  # fmt: skip
    assert status == 1, err
    assert "2 of 4 entries imported with a copy that matches" in out
    assert "changed.bin" in err and "gone.bin" in err and "Traceback" not in err
    status, out, _ = catalog("show", "md5.bin", "--source", str(root), "--state-dir", str(state),
                             "--json")  # fmt: skip
    shown = json.loads(out)
    assert status == 0 and shown["entry"]["sha256"] == hashlib.sha256(md5_only).hexdigest()
    assert shown["entry"]["size"] == len(md5_only)
    assert shown["copies"][0]["result"] == "ok"
    srv = ferryman("--state-dir", str(state), root=root)
    with srv.connect() as conn:
        assert conn.get("/good.bin").header("repr-digest") == repr_digest(good)
        assert conn.get("/changed.bin").header("repr-digest") is None  # a claim, not served
    os.utime(root / "changed.bin", ns=(0, 0))  # the claim's size, and its mtime of 0
    with srv.connect() as conn:
        assert conn.get("/changed.bin").header("repr-digest") is None  # still a claim


def test_scan_records_what_is_there_and_show_prints_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "x.bin").write_bytes(b"x" * 1000)
    (root / "y.bin").write_bytes(b"")
    state = ["--state-dir", str(tmp_path / "state")]
    status, out, _ = catalog("scan", str(root), *state)
    assert status == 0 and "2 files recorded" in out
    status, out, _ = catalog("show", "d/x.bin", "--source", str(root), *state)
    assert status == 0 and "live: 1000 bytes" in out and "verified ok" in out
    status, out, _ = catalog("show", "nope", "--source", str(root), *state)
    assert status == 1 and "not catalogued" in out
    status, out, _ = catalog("migrate", "--source", str(root), *state)
    assert status == 0 and f"schema version {LATEST}" in out


def test_runs_lists_an_audit_with_its_progress_and_findings(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for name in ("a.bin", "b.bin", "c.bin"):
        (root / name).write_bytes(name.encode())
    state = ["--state-dir", str(tmp_path / "state")]
    assert catalog("scan", str(root), *state)[0] == 0
    (root / "b.bin").write_bytes(b"")  # emptied: one finding
    done = subprocess.run([sys.executable, "-m", "ferryman.cli", "audit", str(root), *state],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    status, out, _ = catalog("runs", "--source", str(root), *state)
    assert status == 0
    first, store = out.splitlines()[:2]
    assert first.startswith("audit ") and " finished " in first
    assert store.split() == [str(root), "through", "c.bin", "(2", "fine,", "1", "finding)"]
    status, out, _ = catalog("runs", "--source", str(root), "--json", *state)
    (run,) = json.loads(out)
    assert run["stores"] == [{"store": str(root), "through": "c.bin", "ok": 2, "findings": 1}]
    status, _, err = catalog("runs", "--source", str(root), "--limit", "0", *state)
    assert status == 2 and "--limit" in err


def test_a_missing_or_locked_catalog_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    status, _, err = catalog("show", "k", "--source", str(root), "--state-dir",
                             str(tmp_path / "none"))  # fmt: skip
    assert status == 2 and "no catalog at" in err and "Traceback" not in err
    state = tmp_path / "state"
    assert catalog("scan", str(root), "--state-dir", str(state))[0] == 0
    (root / "new.bin").write_bytes(b"n")
    holder = sqlite3.connect(state / "catalog.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        status, _, err = catalog("scan", str(root), "--state-dir", str(state))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert status == 2 and "locked" in err and "Traceback" not in err
    assert os.path.exists(state / "catalog.db")
