"""The small-body cache: bounded, and never answers for a file that changed."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ferryman.app.bodycache import SmallBodyCache, same_file
from ferryman.app.fileat import identity
from tests.builders import request

HEADERS = [("Content-Type", "text/plain")]


_ROOTS: dict[Path, int] = {}  # tmp_path -> a descriptor of it, for same_file


@pytest.fixture(autouse=True)
def root(tmp_path: Path) -> Iterator[None]:
    _ROOTS[tmp_path] = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield
    os.close(_ROOTS.pop(tmp_path))


def checked(path: Path) -> Callable[[], bool]:
    """The check FileReader stores with an answer made from `path` (in the root)."""
    return same_file(_ROOTS[path.parent], path.name, identity(os.stat(path)), ())


def put(cache: SmallBodyCache, path: Path, data: bytes) -> None:
    path.write_bytes(data)
    cache.store(request("GET", "/" + path.name), checked(path), HEADERS, data)


def test_hit_then_miss_after_change(tmp_path: Path) -> None:
    cache = SmallBodyCache()
    put(cache, tmp_path / "a", b"one")
    hit = cache.response(request("GET", "/a"))
    assert hit is not None and hit.body.parts == (b"one",)
    assert hit.head_block == b"Content-Type: text/plain\r\n"
    os.utime(tmp_path / "a", ns=(0, 123))  # same size, other mtime
    assert cache.response(request("GET", "/a")) is None
    assert len(cache) == 0 and cache.hits == 1 and cache.misses == 1


def test_miss_when_deleted_or_replaced(tmp_path: Path) -> None:
    cache = SmallBodyCache()
    put(cache, tmp_path / "a", b"one")
    (tmp_path / "a").unlink()
    assert cache.response(request("GET", "/a")) is None
    put(cache, tmp_path / "b", b"two")
    (tmp_path / "b2").write_bytes(b"TWO")
    os.replace(tmp_path / "b2", tmp_path / "b")  # new inode, same size
    assert cache.response(request("GET", "/b")) is None


def test_bounded_by_entries_and_bytes(tmp_path: Path) -> None:
    cache = SmallBodyCache(max_entries=3, max_bytes=16 * 100)
    for i in range(5):
        put(cache, tmp_path / f"f{i}", b"x" * 10)
    assert len(cache) == 3
    assert (
        cache.response(request("GET", "/f0")) is None
        and cache.response(request("GET", "/f4")) is not None
    )
    big = SmallBodyCache(max_entries=100, max_bytes=16 * 100)
    for i in range(40):
        put(big, tmp_path / f"g{i}", b"y" * 100)  # 100 bytes each, 1600 allowed
    assert sum(len(e.body) for e in big._entries.values()) <= 1600
    put(big, tmp_path / "huge", b"z" * 200)  # over max_bytes/16: not kept
    assert big.response(request("GET", "/huge")) is None


def test_only_plain_reads_are_kept_and_answered(tmp_path: Path) -> None:
    cache = SmallBodyCache()
    (tmp_path / "a").write_bytes(b"one")
    current = checked(tmp_path / "a")
    cache.store(
        request("GET", "/a", {"Range": "bytes=0-0"}), current, HEADERS, b"o"
    )  # a 206's body
    assert len(cache) == 0
    cache.store(request("GET", "/a"), current, HEADERS, b"one")
    assert cache.response(request("HEAD", "/a")) is not None
    assert (
        cache.response(request("GET", "/a", {"If-None-Match": '"x"'})) is None
    )  # the full path decides
    assert cache.response(request("DELETE", "/a")) is None


def test_only_plain_reads_apply() -> None:
    assert SmallBodyCache.applies_to("GET", {"host": "h", "accept": "*/*"})
    assert SmallBodyCache.applies_to("HEAD", {})
    assert not SmallBodyCache.applies_to("PUT", {})
    for name in ("range", "if-none-match", "if-modified-since", "if-match", "if-range"):
        assert not SmallBodyCache.applies_to("GET", {name: "x"})
