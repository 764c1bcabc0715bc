"""Small files answered from memory stay exactly as fresh as the disk."""

from __future__ import annotations

import os
from pathlib import Path

from tests.serverproc import ServerProcess, Servers


def test_changes_are_seen_at_once(ferryman: Servers, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    target = root / "f.txt"
    target.write_bytes(b"version-1")
    srv = ferryman(root=root)
    for _ in range(3):  # the second and third come from memory
        assert srv.get("/f.txt").body == b"version-1"
    with open(target, "r+b") as f:  # rewritten in place, same size
        f.write(b"version-2")
    assert srv.get("/f.txt").body == b"version-2"
    (root / "new").write_bytes(b"version-3")
    os.replace(root / "new", target)
    r = srv.get("/f.txt")
    assert r.body == b"version-3"
    assert r.header("etag") == srv.get("/f.txt").header("etag")
    target.unlink()
    assert srv.get("/f.txt").status == 404


def test_swapping_in_a_symlink_out_of_the_root_is_caught(ferryman: Servers, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.txt").write_bytes(b"OUTSIDE")
    (root / "f.txt").write_bytes(b"inside!")
    srv = ferryman(root=root)
    assert srv.get("/f.txt").body == b"inside!"
    assert srv.get("/f.txt").body == b"inside!"
    (root / "f.txt").unlink()
    (root / "f.txt").symlink_to(tmp_path / "secret.txt")
    assert srv.get("/f.txt").status == 404


def test_cached_and_uncached_answers_are_identical(ferryman: Servers) -> None:
    cached, plain = ferryman(), ferryman("--file-cache", "0")

    def comparable(srv: ServerProcess, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        srv.get(path)  # fill
        r = srv.get(path)
        own = ("Date", "X-Request-Id")  # each answer's own
        return r.status, [(k, v) for k, v in r.headers if k not in own], r.body

    for path in ("/hello.txt", "/p1000.bin", "/with%20index/", "/p16384.bin"):
        assert comparable(cached, path) == comparable(plain, path)


def test_conditional_requests_bypass_the_cache(ferryman: Servers) -> None:
    srv = ferryman()
    etag = srv.get("/hello.txt").header("etag")
    assert etag
    srv.get("/hello.txt")
    assert srv.get("/hello.txt", {"If-None-Match": etag}).status == 304
    assert srv.get("/hello.txt", {"Range": "bytes=0-4"}).body == b"hello"
