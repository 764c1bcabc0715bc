"""`ferryman repair` over real stores: every repairable copy restored byte-exact from a
good one, no good copy touched, the unrepairable reported, a killed repair run again."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.damage import flip_byte
from tests.integration.test_audit import NAMES, audit, findings_of
from tests.integration.test_audit import fleet as fleet
from tests.serverproc import pattern


def repair(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "ferryman.cli", "repair", *args],
        capture_output=True, text=True, timeout=180, env={**os.environ, **(env or {})},
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def snapshot(*roots: Path) -> dict[str, tuple[int, int, bytes]]:
    """path -> (inode, mtime_ns, bytes) of every file: what 'untouched' means."""
    found = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and ".ferryman" not in path.parts:
                st = path.stat()
                found[str(path)] = (st.st_ino, st.st_mtime_ns, path.read_bytes())
    return found


def test_repair_restores_every_repairable_copy_and_touches_no_good_one(
    fleet: dict[str, Any], tmp_path: Path
) -> None:
    root, mirror, url = fleet["root"], fleet["mirror"], fleet["url"]
    moto, bucket, data = fleet["moto"], fleet["bucket"], fleet["data"]
    (root / "a.bin").unlink()
    (mirror / "b.bin").write_bytes(b"")
    with open(mirror / "c.bin", "r+b") as handle:
        handle.truncate(10)
    flip_byte(root / "d.bin", keep_mtime=True)
    moto.put_object(bucket, "rep/f.bin", bytes(b ^ 1 for b in data["f.bin"]))
    for where in (root, mirror):
        (where / "h.bin").write_bytes(b"bad")
    moto.put_object(bucket, "rep/h.bin", b"bad")
    (root / "extra.bin").write_bytes(b"unexpected: reported, never deleted")
    stores = ["--replica", str(mirror), "--replica", url, "--state-dir", str(fleet["state"]),
              "--deep"]  # fmt: skip
    before = snapshot(root, mirror)
    status, out = repair(str(root), *stores, env=fleet["env"])  # a plan only
    assert status == 1, out
    assert "planned" in out and snapshot(root, mirror) == before
    assert moto.get_object(bucket, "rep/f.bin")[1] != data["f.bin"]
    report = tmp_path / "repair.json"
    status, out = repair(str(root), *stores, "--apply", "--report", str(report),
                         env=fleet["env"])  # fmt: skip
    assert status == 1, out  # h.bin has no good copy anywhere
    outcomes = {(r["key"], r["store"]): r["outcome"] for r in json.loads(report.read_text())[
        "repairs"]}  # fmt: skip
    assert outcomes == {
        ("a.bin", str(root)): "repaired", ("b.bin", str(mirror)): "repaired",
        ("c.bin", str(mirror)): "repaired", ("d.bin", str(root)): "repaired",
        ("f.bin", url): "repaired", ("h.bin", str(root)): "unrepairable",
        ("h.bin", str(mirror)): "unrepairable", ("h.bin", url): "unrepairable",
    }  # fmt: skip
    for name in ("a.bin", "d.bin"):
        assert (root / name).read_bytes() == data[name]
    for name in ("b.bin", "c.bin"):
        assert (mirror / name).read_bytes() == data[name]
    assert moto.get_object(bucket, "rep/f.bin") == (200, data["f.bin"])
    assert (root / "extra.bin").exists()
    after = snapshot(root, mirror)
    repaired = {str(root / "a.bin"), str(root / "d.bin"), str(mirror / "b.bin"),
                str(mirror / "c.bin")}  # fmt: skip
    for path, state in before.items():
        if path not in repaired:
            assert after[path] == state, f"{path} was touched"
    # What is left: the key bad everywhere, and the file nobody wrote.
    status, out = audit(str(root), *stores, "--report", str(tmp_path / "a.json"),
                        env=fleet["env"])  # fmt: skip
    assert status == 1, out
    assert {(k, kind) for k, _, kind in findings_of(tmp_path / "a.json")} == {
        ("h.bin", "size_mismatch"), ("extra.bin", "unexpected"),
    }  # fmt: skip
    events = repaired_events(fleet["state"])
    assert sorted(events) == sorted(["a.bin", "b.bin", "c.bin", "d.bin", "f.bin"])
    assert len(NAMES) == 9


def repaired_events(state: Path) -> list[str]:
    if not (state / "catalog.db").exists():
        return []
    try:
        with sqlite3.connect(f"file:{state / 'catalog.db'}?mode=ro", uri=True, timeout=5) as c:
            rows = c.execute("SELECT path FROM copy_events WHERE event = 'repaired'").fetchall()
    except sqlite3.Error:
        return []
    return [row[0] for row in rows]


def test_a_repair_killed_midway_is_run_again_and_finishes(tmp_path: Path) -> None:
    root, mirror = tmp_path / "root", tmp_path / "mirror"
    root.mkdir()
    mirror.mkdir()
    lines = []
    for i in range(30):
        body = pattern(2 * 1024 * 1024, i)
        (root / f"f{i:02d}.bin").write_bytes(body)
        lines.append(f"{hashlib.sha256(body).hexdigest()}  f{i:02d}.bin")
    inventory = tmp_path / "inv.txt"
    inventory.write_text("\n".join(lines) + "\n")
    args = [sys.executable, "-m", "ferryman.cli", "repair", str(root), "--replica", str(mirror),
            "--inventory", str(inventory), "--state-dir", str(tmp_path / "state"),
            "--apply"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(repaired_events(tmp_path / "state")) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    first = repaired_events(tmp_path / "state")
    assert 3 <= len(first) < 30
    done = subprocess.run(args, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    for i in range(30):
        assert (mirror / f"f{i:02d}.bin").read_bytes() == (root / f"f{i:02d}.bin").read_bytes()
    events = repaired_events(tmp_path / "state")
    assert len(set(events)) == len(events)  # none copied twice
    # A copy the kill caught after its rename and before its record is found good by
    # the second run (not copied again): every copy is still known to the catalog.
    assert len(events) >= 29
    with sqlite3.connect(f"file:{tmp_path / 'state' / 'catalog.db'}?mode=ro", uri=True) as c:
        known = c.execute(
            "SELECT count(*) FROM copies WHERE store = ? AND state = 'present'",
            (os.path.realpath(mirror),),
        ).fetchone()[0]
    assert known == 30
    assert not list(mirror.rglob(".ferryman-upload-*"))
