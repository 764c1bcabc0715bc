"""Small files answered from memory stay exactly as fresh as the disk."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import ServerProcess


def fetch(srv: ServerProcess, path: str, headers: dict | None = None):  # type: ignore[no-untyped-def]
    with srv.connect() as conn:
        return conn.get(path, headers)


def test_changes_are_seen_at_once(ferryman, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    root.mkdir()
    target = root / "f.txt"
    target.write_bytes(b"version-1")
    srv = ferryman(root=root)
    for _ in range(3):  # the second and third come from memory
        assert fetch(srv, "/f.txt").body == b"version-1"
    with open(target, "r+b") as f:  # rewritten in place, same size
        f.write(b"version-2")
    assert fetch(srv, "/f.txt").body == b"version-2"
    (root / "new").write_bytes(b"version-3")
    os.replace(root / "new", target)
    r = fetch(srv, "/f.txt")
    assert r.body == b"version-3"
    assert r.header("etag") == fetch(srv, "/f.txt").header("etag")
    target.unlink()
    assert fetch(srv, "/f.txt").status == 404


def test_swapping_in_a_symlink_out_of_the_root_is_caught(ferryman, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.txt").write_bytes(b"OUTSIDE")
    (root / "f.txt").write_bytes(b"inside!")
    srv = ferryman(root=root)
    assert fetch(srv, "/f.txt").body == b"inside!"
    assert fetch(srv, "/f.txt").body == b"inside!"
    (root / "f.txt").unlink()
    (root / "f.txt").symlink_to(tmp_path / "secret.txt")
    assert fetch(srv, "/f.txt").status == 404


def test_cached_and_uncached_answers_are_identical(ferryman) -> None:  # type: ignore[no-untyped-def]
    cached, plain = ferryman(), ferryman("--file-cache", "0")

    def comparable(srv: ServerProcess, path: str):  # type: ignore[no-untyped-def]
        fetch(srv, path)  # fill
        r = fetch(srv, path)
        return r.status, [(k, v) for k, v in r.headers if k != "Date"], r.body

    for path in ("/hello.txt", "/p1000.bin", "/with%20index/", "/p16384.bin"):
        assert comparable(cached, path) == comparable(plain, path)


def test_conditional_requests_bypass_the_cache(ferryman) -> None:  # type: ignore[no-untyped-def]
    srv = ferryman()
    etag = fetch(srv, "/hello.txt").header("etag")
    fetch(srv, "/hello.txt")
    assert fetch(srv, "/hello.txt", {"If-None-Match": etag}).status == 304
    assert fetch(srv, "/hello.txt", {"Range": "bytes=0-4"}).body == b"hello"
