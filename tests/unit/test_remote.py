"""A store's objects served and written in-process, over the in-memory store:
the listing limit, hidden dot-names, and the upload retry loop's edges."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ferryman.app import remote
from ferryman.app.remote import RemoteServer
from ferryman.app.remote_uploads import RemoteUploads
from ferryman.app.spool import Spool
from ferryman.catalog.db import Catalog
from ferryman.config import Config
from ferryman.errors import HttpError
from ferryman.http.parser import Request, RequestParser
from ferryman.http.response import Response
from ferryman.stores.base import AccessDenied, Unavailable
from tests.memstore import MemStore


def request(method: str, target: str, body: bytes = b"", **headers: str) -> Request:
    head = f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    parser = RequestParser()
    parser.receive(head.encode("latin-1") + b"\r\n" + body)
    event = parser.next_event()
    assert isinstance(event, Request)
    return event


class Body:
    """A request body already received, as a handler pulls it."""

    def __init__(self, data: bytes) -> None:
        self.pieces = [data] if data else []
        self.done = False
        self.received = 0

    async def read(self) -> bytes:
        if not self.pieces:
            self.done = True
            return b""
        piece = self.pieces.pop(0)
        self.received += len(piece)
        return piece

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while piece := await self.read():
            yield piece


def answer(server: RemoteServer, req: Request) -> Response:
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
    server = RemoteServer(Config(source="s3://b"), store)
    listing = json.loads(payload(answer(server, request("GET", "/d/", Accept="application/json"))))
    names = [e["name"] for e in listing["entries"]]
    assert names == ["sub", "k0", "k1", "k2", "k3", "k4"]  # no dot-name; directories first
    assert "truncated" not in listing
    monkeypatch.setattr(remote, "LISTING_LIMIT", 3)
    cut = json.loads(payload(answer(server, request("GET", "/d/", Accept="application/json"))))
    assert len(cut["entries"]) == 3 and cut["truncated"] is True
    html = payload(answer(server, request("GET", "/d/")))
    assert b"only the first 3 entries" in html


def test_a_prefix_with_nothing_under_it_is_404_and_a_key_prefix_redirects() -> None:
    store = MemStore()
    store.put("d/k", b"x")
    server = RemoteServer(Config(source="s3://b"), store)
    with pytest.raises(HttpError) as missing:
        answer(server, request("GET", "/empty/"))
    assert missing.value.status == 404
    moved = answer(server, request("GET", "/d"))
    assert moved.status == 301 and ("Location", "/d/") in moved.headers


def uploads(store: MemStore, tmp_path: Path, attempts: int = 3) -> RemoteUploads:
    config = Config(source="s3://b", upload_attempts=attempts, verify_writes="full")
    return RemoteUploads(store, Spool(str(tmp_path / "spool")), config)


def put(up: RemoteUploads, data: bytes) -> Response:
    req = request("PUT", "/k.bin", data)
    return asyncio.run(up.put(req, Body(data)))


def test_refused_credentials_are_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ferryman.app.remote_uploads.FIRST_RETRY_DELAY", 0.0)
    store = MemStore(upload_faults=[AccessDenied("no")])
    with pytest.raises(HttpError) as refused:
        put(uploads(store, tmp_path), b"data")
    assert refused.value.status == 403
    assert store.uploads == 1
    assert not list((tmp_path / "spool").iterdir())  # the spool file went with the request


def test_every_attempt_is_used_then_502(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ferryman.app.remote_uploads.FIRST_RETRY_DELAY", 0.0)
    store = MemStore(upload_faults=["empty", Unavailable("reset"), "empty", "empty"])
    with pytest.raises(HttpError) as failed:
        put(uploads(store, tmp_path, attempts=3), b"data")
    assert failed.value.status == 502 and failed.value.error == "store_unverified"
    assert store.uploads == 3
    single = MemStore(upload_faults=["empty"])
    with pytest.raises(HttpError):
        put(uploads(single, tmp_path, attempts=1), b"data")
    assert single.uploads == 1


def test_a_transient_failure_then_a_verified_upload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ferryman.app.remote_uploads.FIRST_RETRY_DELAY", 0.0)
    store = MemStore(upload_faults=[Unavailable("reset")])
    created = put(uploads(store, tmp_path), b"data")
    assert created.status == 201
    assert store.objects["k.bin"].data == b"data" and store.uploads == 2


def test_bytes_that_read_back_wrong_are_retried_then_502(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right size and SHA-256 metadata, other bytes: only --verify-writes full sees it."""
    monkeypatch.setattr("ferryman.app.remote_uploads.FIRST_RETRY_DELAY", 0.0)
    store = MemStore(upload_faults=["corrupt", "corrupt"])
    with pytest.raises(HttpError) as failed:
        put(uploads(store, tmp_path, attempts=2), b"data")
    assert failed.value.status == 502 and "read back" in failed.value.detail
    assert store.uploads == 2
    store = MemStore(upload_faults=["corrupt"])
    assert put(uploads(store, tmp_path, attempts=2), b"data").status == 201
    assert store.objects["k.bin"].data == b"data"


def test_an_object_changed_while_the_body_arrived_is_not_overwritten(tmp_path: Path) -> None:
    store = MemStore()
    etag = store.put("k.bin", b"seen")

    class RacedBody(Body):
        async def read(self) -> bytes:
            if not self.done and self.pieces:
                store.put("k.bin", b"other")  # another writer, mid-body
            return await super().read()

    req = request("PUT", "/k.bin", b"mine", If_Match=etag)
    with pytest.raises(HttpError) as refused:
        asyncio.run(uploads(store, tmp_path).put(req, RacedBody(b"mine")))
    assert refused.value.status == 412
    assert store.uploads == 0 and store.objects["k.bin"].data == b"other"


def test_the_cache_is_told_whenever_an_upload_was_tried(tmp_path: Path) -> None:
    """A 503 (stored, not catalogued) or a 502 (unverified) still changed the store:
    the cache must drop the old version all the same."""
    told: list[str] = []
    catalog = Catalog(tmp_path / "catalog.db")
    catalog.close()  # every record fails: 503 catalog_busy
    config = Config(source="s3://b", upload_attempts=1)
    store = MemStore()
    up = RemoteUploads(store, Spool(str(tmp_path / "spool")), config, catalog, told.append)
    with pytest.raises(HttpError) as unrecorded:
        put(up, b"new")
    assert unrecorded.value.status == 503 and store.objects["k.bin"].data == b"new"
    assert told == ["k.bin"]
    store.upload_faults.append("empty")
    with pytest.raises(HttpError) as unverified:
        put(RemoteUploads(store, up.spool, config, None, told.append), b"newer")
    assert unverified.value.status == 502
    assert told == ["k.bin", "k.bin"]


def test_a_deletion_left_unrecorded_is_recorded_by_the_retry(tmp_path: Path) -> None:
    """503 "deleted but not recorded; retry": the retry finds no object but a live
    catalog entry, records the deletion and answers 204; a third DELETE is 404."""
    store, config, spool = MemStore(), Config(source="s3://b"), Spool(str(tmp_path / "spool"))
    catalog = Catalog(tmp_path / "catalog.db")
    told: list[str] = []
    assert put(RemoteUploads(store, spool, config, catalog, told.append), b"bye").status == 201
    delete = request("DELETE", "/k.bin")
    stale = Catalog(tmp_path / "catalog.db")
    stale.close()  # every record fails
    with pytest.raises(HttpError) as unrecorded:
        asyncio.run(RemoteUploads(store, spool, config, stale, told.append).delete(delete))
    assert unrecorded.value.status == 503 and "k.bin" not in store.objects
    with pytest.raises(HttpError) as unknown:  # a catalog that cannot be read cannot say
        asyncio.run(RemoteUploads(store, spool, config, stale, told.append).delete(delete))
    assert unknown.value.status == 404
    listed = catalog.get("k.bin")
    assert listed is not None and not listed.deleted
    up = RemoteUploads(store, spool, config, catalog, told.append)
    with pytest.raises(HttpError) as refused:
        asyncio.run(up.delete(request("DELETE", "/k.bin", If_Match='"v1"')))
    assert refused.value.status == 412
    assert asyncio.run(up.delete(delete)).status == 204
    listed = catalog.get("k.bin")
    assert listed is not None and listed.deleted
    with pytest.raises(HttpError) as gone:
        asyncio.run(up.delete(delete))
    assert gone.value.status == 404
    catalog.close()
