"""The small-body cache: bounded, never answers for a file that changed, and answers a
revalidation as the full path would."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.app.bodycache import SmallBodyCache, same_file
from ferryman.app.fileat import identity
from ferryman.app.plan import Representation, plan_response
from ferryman.http.dates import format_http_date
from ferryman.http.parser import Request
from tests.builders import request

MTIME = 1_700_000_000
ETAG = '"abc-3"'


def rep_of(data: bytes, etag: str = ETAG, mtime: int = MTIME) -> Representation:
    return Representation(
        size=len(data), etag=etag, last_modified=mtime, name="a.txt", cache_control=None
    )


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
    cache.store(request("GET", "/" + path.name), checked(path), rep_of(data), data)


def test_hit_then_miss_after_change(tmp_path: Path) -> None:
    cache = SmallBodyCache()
    put(cache, tmp_path / "a", b"one")
    hit = cache.response(request("GET", "/a"))
    assert hit is not None and hit.body.parts == (b"one",)
    assert hit.head_block == rep_of(b"one").whole_block()
    assert dict(hit.headers)["ETag"] == ETAG
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
    rep = rep_of(b"one")
    cache.store(request("GET", "/a", {"Range": "bytes=0-0"}), current, rep, b"o")  # a 206's
    cache.store(request("GET", "/a", {"If-None-Match": '"x"'}), current, rep, b"one")
    assert len(cache) == 0
    cache.store(request("GET", "/a"), current, rep, b"one")
    assert cache.response(request("HEAD", "/a")) is not None
    for name, value in (("Range", "bytes=0-0"), ("If-Range", ETAG), ("If-Match", ETAG),
                        ("If-Unmodified-Since", format_http_date(MTIME))):  # fmt: skip
        assert cache.response(request("GET", "/a", {name: value})) is None, name
    assert cache.response(request("DELETE", "/a")) is None


def test_only_plain_reads_apply() -> None:
    assert SmallBodyCache.applies_to("GET", {"host": "h", "accept": "*/*"})
    assert SmallBodyCache.applies_to("HEAD", {})
    assert not SmallBodyCache.applies_to("PUT", {})
    for name in ("range", "if-none-match", "if-modified-since", "if-match", "if-range"):
        assert not SmallBodyCache.applies_to("GET", {name: "x"})


def test_a_revalidation_is_answered_from_memory(tmp_path: Path) -> None:
    cache = SmallBodyCache()
    put(cache, tmp_path / "a", b"one")
    same = cache.response(request("GET", "/a", {"If-None-Match": f'W/"x", {ETAG}'}))
    assert same is not None and same.status == 304 and not same.body.parts
    assert same.head_block == rep_of(b"one").not_modified().head_block
    other = cache.response(request("GET", "/a", {"If-None-Match": '"x"'}))
    assert other is not None and other.status == 200 and other.body.parts == (b"one",)
    since = cache.response(request("HEAD", "/a", {"If-Modified-Since": format_http_date(MTIME)}))
    assert since is not None and since.status == 304
    assert cache.hits == 3
    (tmp_path / "a").write_bytes(b"two")  # changed: the full path decides, and answers 200
    assert cache.response(request("GET", "/a", {"If-None-Match": ETAG})) is None


HEADER_VALUES = {
    "If-None-Match": st.sampled_from(
        ['"abc-3"', 'W/"abc-3"', '"x"', '"x", "abc-3"', "*", "", "abc-3", '"abc-3" junk']
    ),
    "If-Modified-Since": st.sampled_from(
        [format_http_date(MTIME + d) for d in (-86400, -1, 0, 1, 86400)]
        + ["not a date", "Sun, 06 Nov 1994 08:49:37 GMT"]
    ),
    "Accept": st.just("*/*"),
}


@given(
    st.sampled_from(["GET", "HEAD"]),
    st.dictionaries(st.sampled_from(sorted(HEADER_VALUES)), st.just(""), max_size=3).flatmap(
        lambda names: st.fixed_dictionaries({n: HEADER_VALUES[n] for n in names})
    ),
)
def test_a_hit_answers_what_the_full_path_would(method: str, headers: dict[str, str]) -> None:
    """Any revalidation of a kept answer gets the status, headers and body the full
    path's plan_response gives for the same representation."""
    cache = SmallBodyCache()
    rep = rep_of(b"one")
    cache.store(request("GET", "/a"), lambda: True, rep, b"one")
    asked: Request = request(method, "/a", headers)
    hit = cache.response(asked)
    assert hit is not None
    plan = plan_response(asked, rep, max_ranges=1)
    assert hit.status == plan.status
    assert hit.headers == plan.headers
    assert hit.body.parts == (() if plan.status == 304 else (b"one",))


def test_an_answer_whose_headers_cannot_be_framed_is_not_kept(tmp_path: Path) -> None:
    """A header value holding CR or LF has no encoded block: the full path answers
    (and refuses) it every time, as it would without the cache."""
    cache = SmallBodyCache()
    (tmp_path / "a").write_bytes(b"one")
    rep = rep_of(b"one", etag='"a"\r\nSet-Cookie: x=1')
    assert rep.whole_block() is None
    cache.store(request("GET", "/a"), checked(tmp_path / "a"), rep, b"one")
    assert len(cache) == 0 and cache.response(request("GET", "/a")) is None
