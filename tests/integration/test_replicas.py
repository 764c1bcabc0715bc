"""Replicas on write: every PUT and DELETE goes to SOURCE and each --replica, verified.

Real stores: local directories and a bucket on moto's S3 server (behind the
fault proxy where a replica must fail). After each write the test checks the
bytes in every store and what the catalog says each store holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.faultproxy import FaultProxy, Rule
from tests.s3server import MotoServer, s3_env
from tests.serverproc import pattern
from tests.writing import Writable, catalog_entry, delete, put, tokens_file, write_flags


def copies_of(state: Path, key: str) -> dict[str, tuple[str, int | None, str | None]]:
    """store -> (state, size, sha256), as the catalog keeps it."""
    from ferryman.catalog import SqliteCatalog
    from ferryman.catalog.copies import Copies

    with SqliteCatalog(state / "catalog.db") as catalog:
        return {c.store: (c.state, c.size, c.sha256) for c in Copies(catalog).of_path(key)}


def events_of(state: Path, key: str) -> list[tuple[str, str]]:
    from ferryman.catalog import SqliteCatalog
    from ferryman.catalog.copies import Copies

    with SqliteCatalog(state / "catalog.db") as catalog:
        return [(e.store, e.event) for e in Copies(catalog).events(key)]


@pytest.fixture
def stores(tmp_path: Path, moto_server: MotoServer, s3_bucket: str) -> dict[str, Any]:
    root, mirror = tmp_path / "root", tmp_path / "mirror"
    root.mkdir()
    mirror.mkdir()
    return {"root": root, "mirror": mirror, "bucket": s3_bucket, "moto": moto_server,
            "state": tmp_path / "state"}  # fmt: skip


def test_every_write_lands_verified_in_every_store(
    writable: Writable, tmp_path: Path, stores: dict[str, Any]
) -> None:
    root, mirror, bucket, moto = stores["root"], stores["mirror"], stores["bucket"], stores["moto"]
    url = f"s3://{bucket}/copies"
    srv = writable("--replica", str(mirror), "--replica", url, root=root, s3_endpoint=moto.url)
    data = pattern(300_001)
    sha = hashlib.sha256(data).hexdigest()
    assert put(srv, "/a/b.bin", data).status == 201
    assert (root / "a/b.bin").read_bytes() == data
    assert (mirror / "a/b.bin").read_bytes() == data
    assert moto.get_object(bucket, "copies/a/b.bin") == (200, data)
    copies = copies_of(stores["state"], "a/b.bin")
    assert copies == {
        str(root.resolve()): ("present", len(data), sha),
        str(mirror.resolve()): ("present", len(data), sha),
        url: ("present", len(data), sha),
    }
    assert put(srv, "/a/b.bin", b"second").status == 204
    assert (mirror / "a/b.bin").read_bytes() == b"second"
    assert moto.get_object(bucket, "copies/a/b.bin") == (200, b"second")
    assert delete(srv, "/a/b.bin").status == 204
    assert not (root / "a/b.bin").exists() and not (mirror / "a/b.bin").exists()
    assert moto.get_object(bucket, "copies/a/b.bin")[0] == 404
    assert {state for state, _, _ in copies_of(stores["state"], "a/b.bin").values()} == {"deleted"}
    assert [event for _, event in events_of(stores["state"], "a/b.bin")].count("written") == 6
    assert not list(mirror.rglob(".ferryman-upload-*"))


def test_a_replica_that_fails_is_named_and_recorded(
    writable: Writable, tmp_path: Path, stores: dict[str, Any]
) -> None:
    root, mirror, bucket, moto = stores["root"], stores["mirror"], stores["bucket"], stores["moto"]
    url = f"s3://{bucket}"
    with FaultProxy(moto.url) as proxy:
        srv = writable("--replica", str(mirror), "--replica", url, "--upload-attempts", "2",
                       root=root, s3_endpoint=proxy.url)  # fmt: skip
        proxy.add(Rule(method="PUT", error_status=500, times=None))
        r = put(srv, "/k.bin", b"kept here")
        proxy.clear()
    assert r.status == 502, r.body
    answer = json.loads(r.body)
    assert answer["error"] == "replica_failed"
    assert url in answer["detail"] and str(mirror) in answer["detail"]
    assert proxy.url.removeprefix("http://") not in r.body.decode()  # no endpoint in answers
    # SOURCE and the directory hold it; the bucket does not; the catalog says exactly that.
    assert (root / "k.bin").read_bytes() == b"kept here"
    assert (mirror / "k.bin").read_bytes() == b"kept here"
    assert moto.get_object(bucket, "k.bin")[0] == 404
    entry = catalog_entry(stores["state"], "k.bin")
    assert entry is not None and entry.sha256 == hashlib.sha256(b"kept here").hexdigest()
    copies = copies_of(stores["state"], "k.bin")
    assert copies[url][0] == "failed"
    assert copies[str(mirror.resolve())][0] == "present"
    assert (url, "write_failed") in events_of(stores["state"], "k.bin")


def test_a_local_replica_that_cannot_take_the_file_is_named(
    writable: Writable, tmp_path: Path, stores: dict[str, Any]
) -> None:
    root, mirror = stores["root"], stores["mirror"]
    (mirror / "d").write_bytes(b"a file where the write needs a directory")
    srv = writable("--replica", str(mirror), root=root)
    r = put(srv, "/d/x.bin", b"x")
    assert r.status == 502 and str(mirror) in json.loads(r.body)["detail"]
    assert (root / "d/x.bin").read_bytes() == b"x"
    assert copies_of(stores["state"], "d/x.bin")[str(mirror.resolve())][0] == "failed"


@pytest.mark.parametrize(
    ("where", "flags", "message"),
    [
        ("inside", ["--allow-write"], "contain one another"),
        ("missing", ["--allow-write"], "is not a directory"),
        ("mirror", [], "--replica needs --allow-write"),
        ("s3://Bad_Bucket", ["--allow-write"], "replica s3://Bad_Bucket"),
    ],
)
def test_a_replica_that_cannot_work_stops_the_start(
    tmp_path: Path, where: str, flags: list[str], message: str
) -> None:
    root = tmp_path / "root"
    (root / "inside").mkdir(parents=True)
    (tmp_path / "mirror").mkdir()
    replica = {"inside": str(root / "inside"), "missing": str(tmp_path / "nope"),
               "mirror": str(tmp_path / "mirror")}.get(where, where)  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "ferryman.cli", "serve", str(root), "--port", "0",
         "--tokens", str(tokens_file(tmp_path)), "--replica", replica, *flags],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_replicas_from_the_environment_and_toml(tmp_path: Path) -> None:
    from ferryman.config import build_config

    env = {"FERRYMAN_REPLICA": "/a  s3://b/c"}
    assert build_config({}, env).replica == ("/a", "s3://b/c")
    toml = tmp_path / "f.toml"
    toml.write_text('replica = ["/x y", "s3://z"]\n')
    assert build_config({"config": str(toml)}, {}).replica == ("/x y", "s3://z")
    assert build_config({"replica": ["/q"]}, env).replica == ("/q",)
    assert os.environ.get("FERRYMAN_REPLICA") is None


def test_a_replica_bucket_that_does_not_exist_stops_the_start(
    tmp_path: Path, moto_server: MotoServer
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "ferryman.cli", "serve", str(root), "--port", "0",
         *write_flags(tmp_path), "--replica", "s3://no-such-bucket-here"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, **s3_env(moto_server.url)},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "no-such-bucket-here" in done.stderr and "does not exist" in done.stderr
