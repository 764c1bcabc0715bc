"""Listing pages kept for a moment: bounded, never stale past their age, never stale
about which entries a directory holds, and never kept when their links are signed."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.app import paths
from ferryman.app.application import Application
from ferryman.app.listingcache import ListingCache
from ferryman.app.local import LocalReader
from ferryman.config import Config
from ferryman.http.response import Response
from tests.builders import request as parsed_request


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@given(
    max_bytes=st.integers(0, 4000),
    puts=st.lists(st.tuples(st.integers(0, 9), st.integers(0, 1500)), max_size=40),
)
def test_the_pages_kept_never_take_more_than_the_bound(
    max_bytes: int, puts: list[tuple[int, int]]
) -> None:
    cache = ListingCache(max_bytes, 1.0, Clock())
    last: dict[int, bytes] = {}
    for key, size in puts:
        payload = bytes([key]) * size
        cache.put((key,), payload)
        last[key] = payload
        assert cache.size <= max_bytes
        kept = [cache.get((k,)) for k in range(10)]
        assert cache.size == sum(len(p) for p in kept if p is not None)
        # A page kept is the last one put under its key, never an older one.
        assert all(p is None or p == last[k] for k, p in enumerate(kept))


def test_a_page_is_answered_again_only_while_younger_than_its_age() -> None:
    clock = Clock()
    cache = ListingCache(1000, 1.0, clock)
    cache.put(("a",), b"page")
    clock.now += 0.99
    assert cache.get(("a",)) == b"page"
    clock.now += 0.01
    assert cache.get(("a",)) is None
    assert cache.size == 0 and len(cache) == 0


def test_the_least_recently_used_page_goes_first() -> None:
    cache = ListingCache(10, 60.0, Clock())
    cache.put(("a",), b"aaaa")
    cache.put(("b",), b"bbbb")
    assert cache.get(("a",)) == b"aaaa"  # now b is the older one
    cache.put(("c",), b"cccc")
    assert cache.get(("b",)) is None
    assert cache.get(("a",)) == b"aaaa" and cache.get(("c",)) == b"cccc"


def test_off_keeps_nothing() -> None:
    for cache in (ListingCache(0, 1.0, Clock()), ListingCache(1000, 0.0, Clock())):
        cache.put(("a",), b"page")
        assert cache.get(("a",)) is None and not cache.enabled


# -- through the reader: what a client sees --------------------------------------------


@pytest.fixture(autouse=True)
def _path_limits() -> Iterator[None]:
    """An Application sets the process's path limits from its root; put them back."""
    yield
    paths.set_limits(paths.NAME_MAX, paths.PATH_MAX)


def listing(app: Application, target: str = "/d/") -> dict[str, object]:
    answer = app.handle(parsed_request("GET", target, {"Accept": "application/json"}), None)
    if not isinstance(answer, Response):
        answer = asyncio.run(_awaited(answer))
    assert answer.status == 200
    doc: dict[str, object] = json.loads(
        b"".join(p for p in answer.body.parts if isinstance(p, bytes))
    )
    return doc


async def _awaited(pending: Awaitable[Response]) -> Response:
    return await pending


def sizes(doc: dict[str, object]) -> dict[str, int]:
    entries = doc["entries"]
    assert isinstance(entries, list)
    return {e["name"]: e["size"] for e in entries}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Application, Path]]:
    directory = tmp_path / "root" / "d"
    directory.mkdir(parents=True)
    (directory / "a.txt").write_bytes(b"1")
    config = Config(source=str(tmp_path / "root"), state_dir=str(tmp_path / "state"),
                    listing_cache_age=3600.0)  # fmt: skip
    app = Application(config)
    yield app, directory
    app.reader.close()


def test_an_entry_added_removed_or_renamed_shows_at_once(
    served: tuple[Application, Path],
) -> None:
    app, directory = served
    assert sizes(listing(app)) == {"a.txt": 1}
    (directory / "b.txt").write_bytes(b"22")
    assert sizes(listing(app)) == {"a.txt": 1, "b.txt": 2}
    os.rename(directory / "a.txt", directory / "c.txt")
    assert sizes(listing(app)) == {"b.txt": 2, "c.txt": 1}
    (directory / "b.txt").unlink()
    assert sizes(listing(app)) == {"c.txt": 1}


def test_a_page_is_kept_for_the_same_request_only(served: tuple[Application, Path]) -> None:
    app, directory = served
    first = listing(app)
    (directory / "a.txt").write_bytes(b"longer now")  # the directory's times do not change
    assert listing(app) == first  # kept: within --listing-cache-age
    assert sizes(listing(app, "/d/?sort=size")) == {"a.txt": 10}  # another view: made anew


def test_pages_with_signed_links_are_never_kept(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "a.txt").write_bytes(b"1")
    key = tmp_path / "key"
    key.write_bytes(b"k" * 48)
    tokens = tmp_path / "tokens"
    tokens.write_text("r-token-0123456789 read\n")
    config = Config(source=str(root), state_dir=str(tmp_path / "state"), private=True,
                    signing_key=str(key), tokens=str(tokens),
                    listing_cache_age=3600.0)  # fmt: skip
    app = Application(config)
    try:
        headers = {"Accept": "application/json", "Authorization": "Bearer r-token-0123456789"}
        answer = app.handle(parsed_request("GET", "/d/", headers), None)
        if not isinstance(answer, Response):
            answer = asyncio.run(_awaited(answer))
        assert answer.status == 200
        reader = app.reader
        assert isinstance(reader, LocalReader) and reader.pages is not None
        assert len(reader.pages) == 0
    finally:
        app.reader.close()
