"""The write flow's edges, in-process: a store's upload retries, a read-back that
disagrees, catalogs that fail between steps, the write lock, intents.

The store is the in-memory one (tests/memstore.py), so each failure can be
placed exactly; tests through real servers and processes are in
tests/integration/test_uploads.py, test_write_crashes.py and test_write_races.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from ferryman.app import storetarget
from ferryman.app.localtarget import _seal
from ferryman.app.places import Place
from ferryman.app.spool import Spool
from ferryman.app.storetarget import StoreTarget
from ferryman.app.writelock import LockBusy, WriteLocks, lock_offset
from ferryman.app.writes import Writes
from ferryman.catalog.db import CatalogEntry, CatalogError, Intent, SqliteCatalog
from ferryman.errors import HttpError
from ferryman.http.response import Response
from ferryman.stores.base import AccessDenied, Unavailable
from tests.builders import ReceivedBody, request
from tests.memstore import MemStore


class FailingCatalog(SqliteCatalog):
    """A catalog whose `fail` steps raise CatalogError, as a disk that went away would."""

    fail: tuple[str, ...] = ()

    def record(self, *args: Any, **kwargs: Any) -> CatalogEntry:
        if "record" in self.fail:
            raise CatalogError("catalog.db: disk I/O error")
        return super().record(*args, **kwargs)

    def mark_deleted(self, path: str, **kwargs: Any) -> CatalogEntry | None:
        if "mark_deleted" in self.fail:
            raise CatalogError("catalog.db: disk I/O error")
        return super().mark_deleted(path, **kwargs)


@pytest.fixture(autouse=True)
def no_retry_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storetarget, "FIRST_RETRY_DELAY", 0.0)


def writes(
    store: MemStore,
    tmp_path: Path,
    *,
    attempts: int = 3,
    catalog: SqliteCatalog | None = None,
    told: list[str] | None = None,
) -> Writes:
    tmp_path.mkdir(exist_ok=True)
    changed = None if told is None else told.append
    spool = Spool(str(tmp_path / "spool"))
    target = StoreTarget(store, spool, verify_mode="full", attempts=attempts, changed=changed)
    catalog = catalog if catalog is not None else SqliteCatalog(tmp_path / "catalog.db")
    place = Place("s3://b", "s3://b", target)
    return Writes(place, catalog, WriteLocks(str(tmp_path / "locks"), 5.0))


def put(up: Writes, data: bytes) -> Response:
    return asyncio.run(up.put(request("PUT", "/k.bin", body=data), ReceivedBody(data)))


def delete(up: Writes, headers: Mapping[str, str] | None = None) -> Response:
    return asyncio.run(up.delete(request("DELETE", "/k.bin", headers)))


# -- a store's upload ---------------------------------------------------------------------


def test_refused_credentials_are_not_retried(tmp_path: Path) -> None:
    store = MemStore(upload_faults=[AccessDenied("no")])
    up = writes(store, tmp_path)
    with pytest.raises(HttpError) as refused:
        put(up, b"data")
    assert refused.value.status == 403
    assert store.uploads == 1
    assert not list((tmp_path / "spool").iterdir())  # the spool file went with the request
    assert up.catalog.intents() == [] and up.catalog.get("k.bin") is None


def test_every_attempt_is_used_then_502(tmp_path: Path) -> None:
    store = MemStore(upload_faults=["empty", Unavailable("reset"), "empty", "empty"])
    with pytest.raises(HttpError) as failed:
        put(writes(store, tmp_path, attempts=3), b"data")
    assert failed.value.status == 502 and failed.value.error == "store_unverified"
    assert store.uploads == 3
    single = MemStore(upload_faults=["empty"])
    with pytest.raises(HttpError):
        put(writes(single, tmp_path / "one", attempts=1), b"data")
    assert single.uploads == 1


def test_a_transient_failure_then_a_verified_upload(tmp_path: Path) -> None:
    store = MemStore(upload_faults=[Unavailable("reset")])
    up = writes(store, tmp_path)
    created = put(up, b"data")
    assert created.status == 201
    assert store.objects["k.bin"].data == b"data" and store.uploads == 2
    entry = up.catalog.get("k.bin")
    assert entry is not None and entry.sha256 == hashlib.sha256(b"data").hexdigest()
    assert up.catalog.intents() == []


def test_bytes_that_read_back_wrong_are_retried_then_502(tmp_path: Path) -> None:
    """Right size and SHA-256 metadata, other bytes: only --verify-writes full sees it."""
    store = MemStore(upload_faults=["corrupt", "corrupt"])
    with pytest.raises(HttpError) as failed:
        put(writes(store, tmp_path, attempts=2), b"data")
    assert failed.value.status == 502 and "read back" in failed.value.detail
    assert store.uploads == 2
    store = MemStore(upload_faults=["corrupt"])
    assert put(writes(store, tmp_path / "again", attempts=2), b"data").status == 201
    assert store.objects["k.bin"].data == b"data"


def test_an_object_changed_while_the_body_arrived_is_not_overwritten(tmp_path: Path) -> None:
    store = MemStore()
    etag = store.put("k.bin", b"seen")

    class RacedBody(ReceivedBody):
        async def read(self) -> bytes:
            if not self.done and self.pieces:
                store.put("k.bin", b"other")  # another writer, mid-body
            return await super().read()

    req = request("PUT", "/k.bin", {"If-Match": etag}, b"mine")
    with pytest.raises(HttpError) as refused:
        asyncio.run(writes(store, tmp_path).put(req, RacedBody(b"mine")))
    assert refused.value.status == 412
    assert store.uploads == 0 and store.objects["k.bin"].data == b"other"


# -- the catalog, between the steps ---------------------------------------------------------


def test_the_cache_is_told_whenever_an_upload_was_tried(tmp_path: Path) -> None:
    """A 503 (stored, not catalogued) or a 502 (unverified) still changed the store:
    the cache must drop the old version all the same."""
    told: list[str] = []
    catalog = FailingCatalog(tmp_path / "catalog.db")
    catalog.fail = ("record",)
    store = MemStore()
    up = writes(store, tmp_path, attempts=1, catalog=catalog, told=told)
    with pytest.raises(HttpError) as unrecorded:
        put(up, b"new")
    assert unrecorded.value.status == 503 and unrecorded.value.detail.startswith("stored but")
    assert store.objects["k.bin"].data == b"new" and told == ["k.bin"]
    # The intent stays: whoever settles next records what the store holds.
    [intent] = catalog.intents()
    assert (intent.op, intent.size) == ("put", 3)
    assert intent.sha256 == hashlib.sha256(b"new").hexdigest()
    catalog.fail = ()
    assert asyncio.run(up.settle()) == 1
    entry = catalog.get("k.bin")
    assert entry is not None and entry.sha256 == intent.sha256 and catalog.intents() == []
    store.upload_faults.append("empty")
    with pytest.raises(HttpError) as unverified:
        put(up, b"newer")
    assert unverified.value.status == 502 and told == ["k.bin", "k.bin"]
    assert catalog.intents() == []  # a failed commit drops its intent
    assert catalog.get("k.bin") == entry


def test_a_catalog_that_cannot_take_the_intent_changes_nothing(tmp_path: Path) -> None:
    store = MemStore()
    store.put("k.bin", b"old")
    catalog = SqliteCatalog(tmp_path / "catalog.db")
    catalog.close()  # every step fails, the first being the intent
    up = writes(store, tmp_path, catalog=catalog)
    steps: list[tuple[Callable[[], Response], str]] = [
        (lambda: put(up, b"new"), "nothing stored"),
        (lambda: delete(up), "nothing deleted"),
    ]
    for step, detail in steps:
        with pytest.raises(HttpError) as refused:
            step()
        assert (refused.value.status, refused.value.detail) == (503, detail)
        assert ("Retry-After", "1") in refused.value.headers
    assert store.objects["k.bin"].data == b"old" and store.uploads == 0


def test_a_deletion_left_unrecorded_is_recorded_by_the_retry(tmp_path: Path) -> None:
    """503 "deleted but not recorded; retry": the retry finds no object but a live
    catalog entry, records the deletion and answers 204; a third DELETE is 404."""
    catalog = FailingCatalog(tmp_path / "catalog.db")
    store = MemStore()
    up = writes(store, tmp_path, catalog=catalog)
    assert put(up, b"bye").status == 201
    catalog.fail = ("mark_deleted",)
    with pytest.raises(HttpError) as unrecorded:
        delete(up)
    assert unrecorded.value.status == 503 and "k.bin" not in store.objects
    listed = catalog.get("k.bin")
    assert listed is not None and not listed.deleted
    catalog.fail = ()
    with pytest.raises(HttpError) as refused:
        delete(up, {"If-Match": '"v1"'})
    assert refused.value.status == 412
    assert delete(up).status == 204
    listed = catalog.get("k.bin")
    assert listed is not None and listed.deleted and catalog.intents() == []
    with pytest.raises(HttpError) as gone:
        delete(up)
    assert gone.value.status == 404


def test_settling_a_delete_intent_looks_at_the_store(tmp_path: Path) -> None:
    store = MemStore()
    up = writes(store, tmp_path)
    assert put(up, b"one").status == 201
    etag = store.objects["k.bin"].etag
    up.catalog.begin(Intent("k.bin", "delete", etag))
    assert asyncio.run(up.settle()) == 1  # the object is still there: it did not happen
    entry = up.catalog.get("k.bin")
    assert entry is not None and not entry.deleted and up.catalog.intents() == []
    up.catalog.begin(Intent("k.bin", "delete", etag))
    del store.objects["k.bin"]
    assert asyncio.run(up.settle()) == 1
    entry = up.catalog.get("k.bin")
    assert entry is not None and entry.deleted


# -- the local read-back ----------------------------------------------------------------------


@pytest.fixture
def temp_fd(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path / "t", os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, b"stored bytes")
    yield fd
    os.close(fd)


def test_read_back_matches(temp_fd: int) -> None:
    _seal(temp_fd, 12, hashlib.sha256(b"stored bytes").digest(), "full")


@pytest.mark.parametrize(
    ("size", "sha", "mode"),
    [(11, b"stored bytes", "full"), (11, b"stored bytes", "size"), (12, b"other bytes!", "full")],
    ids=["size-full", "size-only", "digest"],
)
def test_read_back_that_disagrees_is_refused(
    temp_fd: int, size: int, sha: bytes, mode: str
) -> None:
    with pytest.raises(HttpError) as info:
        _seal(temp_fd, size, hashlib.sha256(sha).digest(), mode)
    assert (info.value.status, info.value.error) == (500, "verify_failed")


def test_size_mode_does_not_read_back(temp_fd: int) -> None:
    _seal(temp_fd, 12, hashlib.sha256(b"anything else").digest(), "size")


# -- the write lock -------------------------------------------------------------------------


def test_the_lock_orders_tasks_and_times_out(tmp_path: Path) -> None:
    locks = WriteLocks(str(tmp_path / "locks"), 0.2)
    order: list[str] = []

    async def holder() -> None:
        async with locks.hold("k"):
            order.append("first in")
            await asyncio.sleep(0.05)
            order.append("first out")

    async def second() -> None:
        await asyncio.sleep(0)
        async with locks.hold("k"):
            order.append("second in")

    async def run() -> None:
        await asyncio.gather(holder(), second())
        async with locks.hold("k"), locks.hold("other", wait=0):
            pass  # another key is free while this one is held
        async with locks.hold("k"):
            with pytest.raises(LockBusy):
                async with locks.hold("k", wait=0.05):
                    pass

    asyncio.run(run())
    assert order == ["first in", "first out", "second in"]
    locks.close()


def test_the_lock_holds_against_another_process(tmp_path: Path) -> None:
    """A record lock taken by a child process keeps this process out until it ends."""
    import subprocess
    import sys

    locks = WriteLocks(str(tmp_path / "locks"), 0.1)
    code = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(tmp_path / 'locks')!r}, os.O_RDWR)\n"
        f"fcntl.lockf(fd, fcntl.LOCK_EX, 1, {lock_offset('k')}, 0)\n"
        "print('held', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline().strip() == "held"

    async def attempt() -> bool:
        try:
            async with locks.hold("k"):
                return True
        except LockBusy:
            return False

    try:
        assert asyncio.run(attempt()) is False
        assert asyncio.run(_other_key(locks)) is True
    finally:
        child.stdin.close()
        child.wait(10)
        child.stdout.close()
    assert asyncio.run(attempt()) is True  # the kernel dropped the dead process's lock
    locks.close()


async def _other_key(locks: WriteLocks) -> bool:
    async with locks.hold("another key"):
        return True
