"""A store's objects served in-process, over the in-memory store: the listing
limit and hidden dot-names. (Writes: tests/unit/test_writes.py.)"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.app import remote
from ferryman.app.remote import RemoteReader
from ferryman.config import Config
from ferryman.errors import HttpError
from ferryman.http.parser import Request
from ferryman.http.response import Response
from tests.builders import request
from tests.memstore import MemStore


def answer(server: RemoteReader, req: Request) -> Response:
    async def run() -> Response:
        result = server.get(req)
        return result if isinstance(result, Response) else await result

    return asyncio.run(run())


def payload(response: Response) -> bytes:
    return b"".join(p for p in response.body.parts if isinstance(p, bytes))


def test_listing_shows_at_most_the_limit_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemStore()
    for i in range(5):
        store.put(f"d/k{i}", b"x")
    store.put("d/.hidden", b"x")
    store.put("d/sub/inner", b"x")
    server = RemoteReader(Config(source="s3://b"), store)
    listing = json.loads(
        payload(answer(server, request("GET", "/d/", {"Accept": "application/json"})))
    )
    names = [e["name"] for e in listing["entries"]]
    assert names == ["sub", "k0", "k1", "k2", "k3", "k4"]  # no dot-name; directories first
    assert "truncated" not in listing
    monkeypatch.setattr(remote, "LISTING_LIMIT", 3)
    cut = json.loads(payload(answer(server, request("GET", "/d/", {"Accept": "application/json"}))))
    assert len(cut["entries"]) == 3 and cut["truncated"] is True
    html = payload(answer(server, request("GET", "/d/")))
    assert b"only the first 3 entries are listed" in html


def test_a_prefix_with_nothing_under_it_is_404_and_a_key_prefix_redirects() -> None:
    store = MemStore()
    store.put("d/k", b"x")
    server = RemoteReader(Config(source="s3://b"), store)
    with pytest.raises(HttpError) as missing:
        answer(server, request("GET", "/empty/"))
    assert missing.value.status == 404
    moved = answer(server, request("GET", "/d"))
    assert moved.status == 301 and ("Location", "/d/") in moved.headers
    with_query = answer(server, request("GET", "/d?page=2"))
    assert with_query.status == 301 and ("Location", "/d/?page=2") in with_query.headers


# A key segment: any text but "/" and NUL (keys are UTF-8), not a dot-name (never served).
segment = st.text(min_size=1, max_size=10).filter(
    lambda s: "/" not in s and "\0" not in s and not s.startswith(".")
)
query = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20).filter(
    lambda q: "#" not in q
)


@given(st.lists(segment, min_size=1, max_size=4), query)
def test_a_prefix_without_its_slash_always_redirects_keeping_the_query(
    segments: list[str], asked: str
) -> None:
    store = MemStore()
    store.put("/".join(segments) + "/k", b"x")
    server = RemoteReader(Config(source="s3://b"), store)
    raw = "/" + "/".join(quote(s, safe="") for s in segments)
    moved = answer(server, request("GET", raw + ("?" + asked if asked else "")))
    assert moved.status == 301
    location = urlsplit(dict(moved.headers)["Location"])
    assert location.path == raw + "/" and location.query == asked
