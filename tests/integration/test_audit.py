"""`ferryman audit` over real stores with faults put in by hand: every fault found, with
the right kind and store, and nothing else; a run killed with SIGKILL continues.

The stores: SOURCE (a directory), a replica directory and a replica bucket on
moto's S3 server. The files are written through a real server, so the
catalog and its copies are what production would have.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.damage import flip_byte
from tests.faultproxy import FaultProxy
from tests.s3server import MotoServer, s3_env
from tests.serverproc import pattern
from tests.writing import Writable, put

NAMES = ["a.bin", "b.bin", "c.bin", "d.bin", "dir/e.bin", "f.bin", "g.bin", "h.bin", "ok.bin"]


def audit(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "ferryman.cli", "audit", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def fleet(
    writable: Writable, tmp_path: Path, moto_server: MotoServer, s3_bucket: str
) -> dict[str, Any]:
    """Three stores holding the same nine files, written through a server, then stopped."""
    root, mirror = tmp_path / "root", tmp_path / "mirror"
    root.mkdir()
    mirror.mkdir()
    url = f"s3://{s3_bucket}/rep"
    env = s3_env(moto_server.url)
    srv = writable(
        "--replica", str(mirror), "--replica", url, root=root, s3_endpoint=moto_server.url
    )
    data = {name: pattern(10_000 + 1000 * i, 7 * i) for i, name in enumerate(NAMES)}
    for name, body in data.items():
        assert put(srv, "/" + name, body).status == 201
    srv.stop()
    return {"root": root, "mirror": mirror, "url": url, "env": env, "data": data,
            "moto": moto_server, "bucket": s3_bucket, "state": tmp_path / "state"}  # fmt: skip


def findings_of(report: Path) -> set[tuple[str, str, str]]:
    doc = json.loads(report.read_text())
    return {(f["key"], f["store"], f["kind"]) for f in doc["findings"]}


def test_every_fault_is_found_with_its_kind_and_store(
    fleet: dict[str, Any], tmp_path: Path
) -> None:
    root, mirror, url = fleet["root"], fleet["mirror"], fleet["url"]
    moto, bucket = fleet["moto"], fleet["bucket"]
    (root / "a.bin").unlink()  # missing in SOURCE
    (root / "b.bin").write_bytes(b"")  # zero_byte
    with open(root / "c.bin", "r+b") as handle:  # size_mismatch: truncated
        handle.truncate(100)
    flip_byte(root / "d.bin", keep_mtime=True)  # digest_mismatch, found only by reading
    (root / "extra.bin").write_bytes(b"nobody wrote this")  # unexpected
    (mirror / "dir/e.bin").unlink()  # missing in the replica directory
    other = bytes(b ^ 0x01 for b in fleet["data"]["f.bin"])  # same size, other bytes
    moto.put_object(bucket, "rep/f.bin", other)  # digest_mismatch in the bucket
    for where in (root, mirror):  # a key bad in every store
        (where / "h.bin").write_bytes(b"bad")
    moto.put_object(bucket, "rep/h.bin", b"bad")
    stores = ["--replica", str(mirror), "--replica", url, "--state-dir", str(fleet["state"])]
    report = tmp_path / "deep.json"
    status, out = audit(str(root), *stores, "--deep", "--report", str(report), env=fleet["env"])
    assert status == 1, out
    src, mir = str(root), str(mirror)
    assert findings_of(report) == {
        ("a.bin", src, "missing"),
        ("b.bin", src, "zero_byte"),
        ("c.bin", src, "size_mismatch"),
        ("d.bin", src, "digest_mismatch"),
        ("extra.bin", src, "unexpected"),
        ("dir/e.bin", mir, "missing"),
        ("f.bin", url, "digest_mismatch"),
        ("h.bin", src, "size_mismatch"),
        ("h.bin", mir, "size_mismatch"),
        ("h.bin", url, "size_mismatch"),
    }
    doc = json.loads(report.read_text())
    assert doc["run"]["complete"] and doc["run"]["deep"] and doc["expected"] == len(NAMES)
    assert doc["summary"][url]["ok"] == len(NAMES) - 2
    digest = next(f for f in doc["findings"] if f["key"] == "d.bin")
    assert digest["expected_sha256"] == hashlib.sha256(fleet["data"]["d.bin"]).hexdigest()
    assert digest["actual_sha256"] == hashlib.sha256((root / "d.bin").read_bytes()).hexdigest()
    # Without --deep: sizes and trusted digests only; the flipped bytes pass unseen.
    listing = tmp_path / "listing.json"
    status, out = audit(str(root), *stores, "--report", str(listing), env=fleet["env"])
    assert status == 1, out
    assert findings_of(listing) == findings_of(report) - {
        ("d.bin", src, "digest_mismatch"), ("f.bin", url, "digest_mismatch"),
    }  # fmt: skip


def test_a_clean_fleet_exits_0_and_an_unreadable_store_exits_3(
    fleet: dict[str, Any], tmp_path: Path
) -> None:
    stores = ["--replica", str(fleet["mirror"]), "--replica", fleet["url"],
              "--state-dir", str(fleet["state"])]  # fmt: skip
    status, out = audit(str(fleet["root"]), *stores, "--deep", env=fleet["env"])
    assert status == 0, out
    assert "complete" in out and "Traceback" not in out
    gone = ["--replica", str(tmp_path / "not-there"), "--state-dir", str(fleet["state"])]
    status, out = audit(str(fleet["root"]), *gone, env=fleet["env"])
    assert status == 3, out
    assert "not-there" in out and "Traceback" not in out


def test_usage_errors_exit_2_naming_the_problem(fleet: dict[str, Any], tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("not a digest  a.bin\n")
    cases = [
        (["--inventory", str(bad)], "line 1"),
        (["--report", str(tmp_path / "r.pdf")], ".pdf"),
        (["--state-dir", str(tmp_path / "empty")], "no catalog"),
    ]
    for extra, message in cases:
        status, out = audit(str(fleet["root"]), *extra)
        assert status == 2 and message in out and "Traceback" not in out, out


def test_an_inventory_gives_the_expected_set(tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    (bag / "data").mkdir(parents=True)
    files = {"data/one.txt": b"one", "data/two.txt": b"two"}
    lines = []
    for key, body in files.items():
        (bag / key).write_bytes(body)
        lines.append(f"{hashlib.sha256(body).hexdigest()}  {key}")
    manifest = tmp_path / "manifest-sha256.txt"
    manifest.write_text("\n".join(lines) + "\n")
    state = ["--state-dir", str(tmp_path / "state")]
    assert audit(str(bag), "--inventory", str(manifest), "--deep", *state)[0] == 0
    (bag / "data/two.txt").write_bytes(b"TWO")
    status, out = audit(str(bag), "--inventory", str(manifest), "--deep", *state)
    assert status == 1 and "digest_mismatch" in out and "data/two.txt" in out


def test_an_audit_killed_midway_continues_and_reads_nothing_twice(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    lines = []
    for i in range(40):
        body = pattern(256 * 1024, i)
        (root / f"f{i:02d}.bin").write_bytes(body)
        lines.append(f"{hashlib.sha256(body).hexdigest()}  f{i:02d}.bin")
    inventory = tmp_path / "inv.txt"
    inventory.write_text("\n".join(lines) + "\n")
    args = [sys.executable, "-m", "ferryman.cli", "audit", str(root), "--inventory",
            str(inventory), "--deep", "--state-dir", str(tmp_path / "state")]  # fmt: skip
    catalog = tmp_path / "state" / "catalog.db"
    assert 8 <= killed_after_reads(args, catalog) < 40
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "continuing audit" in done.stderr
    assert read_count(catalog) == 40  # each copy hashed once over both runs


def test_an_audit_of_a_bucket_killed_midway_continues_after_what_it_checked(
    tmp_path: Path, moto_server: MotoServer, s3_bucket: str
) -> None:
    """As above, on S3: the resumed run reads no copy twice, and its listing starts after
    the last key the killed run recorded."""
    lines = []
    for i in range(40):
        body = pattern(256 * 1024, i)
        moto_server.put_object(s3_bucket, f"f{i:02d}.bin", body)
        lines.append(f"{hashlib.sha256(body).hexdigest()}  f{i:02d}.bin")
    inventory = tmp_path / "inv.txt"
    inventory.write_text("\n".join(lines) + "\n")
    env = {**os.environ, **s3_env(moto_server.url)}
    args = [sys.executable, "-m", "ferryman.cli", "audit", f"s3://{s3_bucket}", "--inventory",
            str(inventory), "--deep", "--state-dir", str(tmp_path / "state")]  # fmt: skip
    catalog = tmp_path / "state" / "catalog.db"
    assert 8 <= killed_after_reads(args, catalog, env) < 40
    with FaultProxy(moto_server.url) as proxy:  # to see what the resumed run asks for
        done = subprocess.run([*args, "--report", str(tmp_path / "r.json")],
                              capture_output=True, text=True, timeout=120,
                              env={**env, **s3_env(proxy.url)})  # fmt: skip
        listings = [r.target for r in proxy.log if "list-type=2" in r.target]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "continuing audit" in done.stderr
    assert read_count(catalog) == 40  # each copy read once over both runs
    assert len(listings) == 1 and "start-after=f" in listings[0]
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    assert summary[f"s3://{s3_bucket}"]["ok"] == 40  # the keys checked before count too


def test_a_repeated_audit_records_only_what_changed(tmp_path: Path) -> None:
    """The catalog grows with what an audit learns, not with the store: a second listing
    audit of an unchanged tree adds no copy event and no per-key row; a rewritten file
    and a missing one are noted, and a finding is a row of its run."""
    import sqlite3

    root = tmp_path / "root"
    root.mkdir()
    lines = []
    for i in range(300):
        body = pattern(100 + i, i)
        (root / f"d{i % 7}" / f"f{i:03d}.bin").parent.mkdir(exist_ok=True)
        (root / f"d{i % 7}" / f"f{i:03d}.bin").write_bytes(body)
        lines.append(f"d{i % 7}/f{i:03d}.bin,{len(body)},{hashlib.sha256(body).hexdigest()}")
    inventory = tmp_path / "inv.csv"
    inventory.write_text("key,size,sha256\n" + "\n".join(lines) + "\n")
    state = ["--inventory", str(inventory), "--state-dir", str(tmp_path / "state")]
    catalog = tmp_path / "state" / "catalog.db"

    def counts() -> tuple[int, int, int]:
        with sqlite3.connect(f"file:{catalog}?mode=ro", uri=True) as conn:
            events = conn.execute("SELECT count(*) FROM copy_events").fetchone()[0]
            copies = conn.execute("SELECT count(*) FROM copies").fetchone()[0]
            findings = conn.execute("SELECT count(*) FROM run_findings").fetchone()[0]
        return events, copies, findings

    assert audit(str(root), *state)[0] == 0
    first = counts()
    assert first == (300, 300, 0)  # every copy learned once
    assert audit(str(root), *state)[0] == 0
    assert counts() == first  # nothing new: nothing written
    (root / "d1" / "f001.bin").write_bytes(pattern(101, 99))  # same size, another version
    (root / "d2" / "f002.bin").unlink()
    status, out = audit(str(root), *state)
    assert status == 1 and "d2/f002.bin" in out
    assert counts() == (302, 300, 1)  # the rewritten and the missing copy; one finding
    status, _ = audit(str(root), *state)
    assert status == 1 and counts() == (302, 300, 2)  # the same finding, in a new run


def killed_after_reads(args: list[str], catalog: Path, env: dict[str, str] | None = None) -> int:
    """Run the audit at 4 MiB/s (ten seconds for 40 copies of 256 KiB), kill it with
    SIGKILL once a few copies are recorded as read; how many were."""
    proc = subprocess.Popen([*args, "--max-rate", "4M"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and read_count(catalog) < 8:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    return read_count(catalog)


def read_count(catalog: Path) -> int:
    """How many copies were hashed ('verified' events from reading), from another process."""
    import sqlite3

    if not catalog.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FROM copy_events WHERE event = 'verified' AND detail = 'read'"
            ).fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0])


def test_a_bucket_as_source_and_a_copy_that_cannot_be_read(
    writable: Writable, tmp_path: Path, moto_server: MotoServer, s3_bucket: str
) -> None:
    from tests.faultproxy import FaultProxy, Rule

    url = f"s3://{s3_bucket}"
    srv = writable(root=url, s3_endpoint=moto_server.url)
    for name in ("one.bin", "two.bin", "three.bin"):
        assert put(srv, "/" + name, pattern(50_000, len(name))).status == 201
    srv.stop()
    state = ["--state-dir", str(tmp_path / "state")]
    with FaultProxy(moto_server.url) as proxy:
        env = s3_env(proxy.url)
        assert audit(url, *state, "--deep", env=env)[0] == 0
        proxy.add(Rule(method="GET", path="two.bin", error_status=500, times=None))
        moto_server.put_object(s3_bucket, "four.bin", b"not written through ferryman")
        report = tmp_path / "r.json"
        status, out = audit(url, *state, "--deep", "--report", str(report), env=env)
    assert status == 1, out
    assert findings_of(report) == {("two.bin", url, "unreadable"), ("four.bin", url, "unexpected")}
    assert proxy.url.removeprefix("http://") not in report.read_text()
