"""The fill engine against an in-memory store: single flight, runs, faults, versions.

Every test checks the bytes that landed on disk against the object's
self-identifying pattern, and what went upstream against the store's counters.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from ferryman.cache import filler as filler_module
from ferryman.cache import health
from ferryman.cache.crypto import BadBlock, BlockCipher
from ferryman.cache.entry import CacheDir
from ferryman.cache.eviction import Evictor
from ferryman.cache.filler import Filler
from ferryman.cache.health import CacheDeclined
from ferryman.stores.base import (
    NotFound,
    PreconditionFailed,
    StoreError,
    Throttled,
    Truncated,
    Unavailable,
)
from tests.asynctime import Clock, run
from tests.memstore import Fault, MemStore
from tests.serverproc import pattern

BS = 4096  # block size: small, so objects of many blocks stay small
KEY = "dir/object.bin"


def make(
    tmp_path: Path,
    store: MemStore,
    *,
    cipher: BlockCipher | None = None,
    evictor: Callable[[CacheDir], Evictor] | None = None,
    **options: Any,
) -> Filler:
    cache = CacheDir(tmp_path / "cache", namespace="mem://test", cipher=cipher)
    settings: dict[str, Any] = {"block_size": BS, "readahead": 0, "revalidate": 60.0}
    settings.update(options)
    return Filler(cache, store, evictor=evictor(cache) if evictor else None, **settings)


async def collect(
    filler: Filler, blocks: range, key: str = KEY, etag: str | None = None
) -> dict[int, StoreError | None]:
    return {block: outcome async for block, outcome in filler.want(key, blocks, etag=etag)}


def on_disk(filler: Filler, key: str = KEY) -> dict[int, bytes]:
    """Every present block's bytes, read the way a worker reads them."""
    reader = filler.cache.open_reader(key)
    assert reader is not None
    with reader:
        count = reader.meta.block_count()
        return {i: reader.read_block(i) for i in range(count) if reader.present(range(i, i + 1))}


def expect(data: bytes, blocks: Iterable[int]) -> dict[int, bytes]:
    return {i: data[i * BS : (i + 1) * BS] for i in blocks}


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


# -- open ------------------------------------------------------------------------------


@run
async def test_open_heads_once_then_trusts_a_fresh_check(tmp_path: Path) -> None:
    store, clock = MemStore(), Clock()
    etag = store.put(KEY, pattern(10 * BS + 5), "video/mp4")
    filler = make(tmp_path, store, clock=clock)
    metas = await asyncio.gather(*(filler.open(KEY) for _ in range(20)))
    assert store.stats == 1 and filler.stats.misses == 1
    meta = metas[0]
    assert all(m == meta for m in metas)
    assert (meta.key, meta.size, meta.etag, meta.content_type) == (
        KEY,
        10 * BS + 5,
        etag,
        "video/mp4",
    )
    assert meta.block_size == BS and meta.block_count() == 11
    await filler.open(KEY)
    assert store.stats == 1  # fresh: no HEAD
    await filler.open(KEY, check=True)
    assert store.stats == 2  # asked to check
    clock.now += 61
    await filler.open(KEY)
    assert store.stats == 3  # the check went stale
    await filler.close()


@run
async def test_an_entry_found_on_disk_is_reused_by_a_new_filler(tmp_path: Path) -> None:
    store = MemStore()
    data = pattern(4 * BS)
    store.put(KEY, data)
    first = make(tmp_path, store)
    await first.open(KEY)
    await collect(first, range(4))
    await first.close()
    second = make(tmp_path, store)
    await second.open(KEY)
    assert store.stats == 1  # meta's mtime says the check is fresh
    assert await collect(second, range(4)) == dict.fromkeys(range(4))
    assert len(store.reads) == 1  # nothing fetched again
    assert on_disk(second) == expect(data, range(4))
    await second.close()


@run
async def test_a_change_through_another_server_drops_the_entry_and_its_waiters(
    tmp_path: Path,
) -> None:
    store = MemStore(chunk=BS)
    old = pattern(4 * BS)
    old_etag = store.put(KEY, old)
    filler = make(tmp_path, store)
    await filler.open(KEY)
    await collect(filler, range(1))
    store.hold_after = 0
    waiting = asyncio.ensure_future(collect(filler, range(1, 4), etag=old_etag))
    await until(lambda: store.held == 1)
    new = pattern(2 * BS, 77)
    new_etag = store.put(KEY, new)
    await filler.changed_elsewhere(KEY)
    assert filler.cache.open_reader(KEY) is None  # gone from disk: every worker sees it
    outcomes = await waiting
    assert all(isinstance(outcomes[i], PreconditionFailed) for i in range(1, 4))
    store.gate.set()
    store.hold_after = None
    meta = await filler.open(KEY)  # fresh by the clock, but there is no entry: a HEAD
    assert meta.etag == new_etag and store.stats == 2
    assert await collect(filler, range(2), etag=new_etag) == dict.fromkeys(range(2))
    assert on_disk(filler) == expect(new, range(2))
    await filler.changed_elsewhere("not/cached")  # nothing to drop
    await filler.close()


@run
async def test_an_entry_found_on_disk_by_a_new_filler_is_dropped_too(tmp_path: Path) -> None:
    store = MemStore()
    store.put(KEY, pattern(BS))
    first = make(tmp_path, store)
    await first.open(KEY)
    await first.close()
    second = make(tmp_path, store)
    await second.changed_elsewhere(KEY)
    assert second.cache.open_reader(KEY) is None
    await second.close()


@run
async def test_no_check_made_before_the_trust_floor_counts(tmp_path: Path) -> None:
    store, clock = MemStore(), Clock()
    store.put(KEY, pattern(BS))
    floor = [math.inf]  # not listening: every open checks
    filler = make(tmp_path, store, clock=clock, floor=lambda: floor[0])
    await filler.open(KEY)
    await filler.open(KEY)
    assert store.stats == 2
    floor[0] = clock.now + 1  # listening again since a moment after the last check
    clock.now += 2
    await filler.open(KEY)
    assert store.stats == 3  # checked once more
    clock.now += 2
    await filler.open(KEY)
    assert store.stats == 3  # that check counts: no HEAD within --cache-revalidate
    await filler.close()


@run
async def test_missing_object(tmp_path: Path) -> None:
    store = MemStore()
    filler = make(tmp_path, store)
    with pytest.raises(NotFound):
        await filler.open("nope")
    store.put(KEY, pattern(BS))
    await filler.open(KEY)
    await store.delete(KEY)
    with pytest.raises(NotFound):
        await filler.open(KEY, check=True)
    assert filler.cache.open_reader(KEY) is None  # the entry went with the object
    await filler.close()


# -- single flight and runs --------------------------------------------------------------


@run
async def test_fifty_concurrent_wants_fetch_each_block_once(tmp_path: Path) -> None:
    store = MemStore(chunk=1000)  # pieces that straddle blocks
    data = pattern(40 * BS + 123)
    store.put(KEY, data)
    filler = make(tmp_path, store, max_fetches=3)
    await filler.open(KEY)
    results = await asyncio.gather(*(collect(filler, range(41)) for _ in range(50)))
    assert all(r == dict.fromkeys(range(41)) for r in results)
    assert store.bytes_sent == len(data)  # every byte went upstream exactly once
    spans = sorted((start, end) for _, start, end in store.reads)
    assert spans[0][0] == 0 and spans[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))  # no overlap
    assert len(spans) == 6  # runs of at most 8 blocks
    assert filler.stats.fills == 41 and filler.stats.bytes_fetched == len(data)
    assert on_disk(filler) == expect(data, range(41))
    await filler.close()


@run
async def test_a_block_in_the_middle_costs_one_short_fetch(tmp_path: Path) -> None:
    store = MemStore()
    data = pattern(1000 * BS)
    store.put(KEY, data)
    filler = make(tmp_path, store)
    await filler.open(KEY)
    assert await collect(filler, range(500, 501)) == {500: None}
    assert store.reads == [(KEY, 500 * BS, 501 * BS)]
    assert on_disk(filler) == expect(data, range(500, 501))
    assert await collect(filler, range(498, 504)) == dict.fromkeys(range(498, 504))
    assert store.reads[1:] == [(KEY, 498 * BS, 500 * BS), (KEY, 501 * BS, 504 * BS)]
    await filler.close()


@run
async def test_blocks_are_reported_as_they_land_not_when_the_run_ends(tmp_path: Path) -> None:
    store = MemStore(chunk=BS)
    data = pattern(8 * BS)
    store.put(KEY, data)
    store.hold_after = 2 * BS  # the read stalls after two blocks
    filler = make(tmp_path, store)
    await filler.open(KEY)
    arrivals = filler.want(KEY, range(8))
    assert await anext(arrivals) == (0, None)
    assert await anext(arrivals) == (1, None)
    assert store.held == 1  # the rest of the run has not arrived
    assert on_disk(filler) == expect(data, range(2))
    store.gate.set()
    rest = {block: outcome async for block, outcome in arrivals}
    assert rest == dict.fromkeys(range(2, 8))
    assert on_disk(filler) == expect(data, range(8))
    await filler.close()


@run
async def test_present_blocks_are_reported_at_once(tmp_path: Path) -> None:
    store = MemStore()
    store.put(KEY, pattern(4 * BS))
    filler = make(tmp_path, store)
    await filler.open(KEY)
    await collect(filler, range(1, 3))
    store.hold_after = 0  # any new fetch stalls before its first byte
    arrivals = filler.want(KEY, range(4))
    got = [await anext(arrivals), await anext(arrivals)]
    assert sorted(got) == [(1, None), (2, None)]
    store.gate.set()
    assert {b async for b, _ in arrivals} == {0, 3}
    await filler.close()


@run
async def test_a_want_outside_the_object_or_another_version_is_refused(tmp_path: Path) -> None:
    store = MemStore()
    etag = store.put(KEY, pattern(4 * BS))
    filler = make(tmp_path, store)
    await filler.open(KEY)
    with pytest.raises(Unavailable):
        await collect(filler, range(2, 5))
    with pytest.raises(PreconditionFailed):
        await collect(filler, range(1), etag='"other"')
    assert await collect(filler, range(1), etag=etag) == {0: None}
    with pytest.raises(PreconditionFailed):
        await collect(filler, range(1), key="never/opened")
    await filler.close()


# -- faults ------------------------------------------------------------------------------


@run
async def test_a_cut_body_writes_nothing_partial_and_fails_after_retries(tmp_path: Path) -> None:
    store = MemStore()
    data = pattern(8 * BS)
    store.put(KEY, data)
    filler = make(tmp_path, store)
    await filler.open(KEY)
    store.faults = [Fault("truncate", int(2.5 * BS)), Fault("reset", 10), Fault("truncate", 0)]
    outcomes = await collect(filler, range(8))
    assert outcomes[0] is None and outcomes[1] is None
    assert all(isinstance(outcomes[i], Truncated) for i in range(2, 8))
    assert [(s, e) for _, s, e in store.reads] == [(0, 8 * BS), (2 * BS, 8 * BS)] * 1 + [
        (2 * BS, 8 * BS)
    ]
    assert on_disk(filler) == expect(data, range(2))  # half of block 2 arrived: not written
    assert await collect(filler, range(8)) == dict.fromkeys(range(8))  # the fault has passed
    assert store.reads[-1] == (KEY, 2 * BS, 8 * BS)
    assert on_disk(filler) == expect(data, range(8))
    await filler.close()


@run
async def test_a_transient_reset_is_retried_transparently(tmp_path: Path) -> None:
    store = MemStore()
    data = pattern(4 * BS)
    store.put(KEY, data)
    filler = make(tmp_path, store)
    await filler.open(KEY)
    store.faults = [Fault("reset", BS // 2)]
    assert await collect(filler, range(4)) == dict.fromkeys(range(4))
    assert [(s, e) for _, s, e in store.reads] == [(0, 4 * BS), (0, 4 * BS)]
    assert on_disk(filler) == expect(data, range(4))
    await filler.close()


@run
async def test_more_bytes_than_asked_are_never_written(tmp_path: Path) -> None:
    store = MemStore(chunk=4 * BS)
    data = pattern(4 * BS)
    store.put(KEY, data)
    filler = make(tmp_path, store)
    await filler.open(KEY)
    store.faults = [Fault("extra")] * 3
    outcomes = await collect(filler, range(4))
    # Blocks before the run's last are written as they complete (the store's
    # range is trusted); the last waits for the end, where the surplus shows.
    assert outcomes == {0: None, 1: None, 2: None, 3: outcomes[3]}
    assert isinstance(outcomes[3], Unavailable)
    assert [(s // BS, e // BS) for _, s, e in store.reads] == [(0, 4), (3, 4), (3, 4)]
    assert on_disk(filler) == expect(data, range(3))
    await filler.close()


@run
async def test_throttling_fails_at_once_with_its_delay(tmp_path: Path) -> None:
    store = MemStore()
    store.put(KEY, pattern(2 * BS))
    filler = make(tmp_path, store)
    await filler.open(KEY)
    store.faults = [Fault("throttle")]
    outcomes = await collect(filler, range(2))
    assert all(isinstance(o, Throttled) and o.retry_after == 3 for o in outcomes.values())
    assert len(store.reads) == 1  # not retried: the store asked for less traffic
    await filler.close()


@run
async def test_an_unexpected_store_exception_fails_waiters_instead_of_hanging(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemStore()
    store.put(KEY, pattern(2 * BS))
    filler = make(tmp_path, store)
    await filler.open(KEY)
    store.faults = [Fault("bug")]
    outcomes = await collect(filler, range(2))
    assert all(isinstance(o, Unavailable) and "bug" in str(o) for o in outcomes.values())
    assert "fetching blocks 0-1" in caplog.text
    assert await collect(filler, range(2)) == {0: None, 1: None}
    await filler.close()


class FailingWrites:
    """An entry's writer whose block writes fail with `code`; the rest is the writer's.

    (A wrapper, not a patched method: the writer's class may be compiled.)
    """

    def __init__(self, writer: object, code: int) -> None:
        self._writer = writer
        self._code = code

    def write_block(self, index: int, data: bytes) -> None:
        raise OSError(self._code, os.strerror(self._code))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


@pytest.mark.parametrize(
    ("code", "condition"),
    [
        (errno.ENOSPC, health.NO_SPACE),
        (errno.EROFS, health.READ_ONLY),
        (errno.EIO, health.IO_ERROR),
    ],
    ids=["full", "read-only", "io-error"],
)
@run
async def test_a_disk_error_declines_blocks_once_logged_until_a_probe_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    code: int, condition: str,
) -> None:  # fmt: skip
    store = MemStore()
    store.put(KEY, pattern(4 * BS))
    store.put("other", pattern(BS, 9))
    filler = make(tmp_path, store)
    await filler.open(KEY)
    fill = filler._entries[KEY]
    monkeypatch.setattr(fill, "writer", FailingWrites(fill.writer, code))
    outcomes = await collect(filler, range(2))
    assert all(isinstance(o, CacheDeclined) and condition in str(o) for o in outcomes.values())
    assert filler.health.condition == condition
    assert filler.health.describe().startswith(f"degraded: {condition} since ")
    reads = len(store.reads)
    for _ in range(3):  # degraded: declined at once, no fetch, nothing logged again
        outcomes = await collect(filler, range(2, 4))
        assert all(isinstance(o, CacheDeclined) for o in outcomes.values())
        with pytest.raises(CacheDeclined):
            await filler.open("other")  # no new entry while degraded
    assert len(store.reads) == reads
    assert caplog.text.count("degraded:") == 1
    monkeypatch.undo()
    assert await filler.probe()
    assert filler.health.describe() == "ok"
    assert caplog.text.count("usable again") == 1
    assert await collect(filler, range(4)) == dict.fromkeys(range(4))
    assert on_disk(filler) == expect(pattern(4 * BS), range(4))
    await filler.close()


@run
async def test_a_degraded_disk_stays_degraded_while_the_probe_fails(tmp_path: Path) -> None:
    store = MemStore()
    store.put(KEY, pattern(2 * BS))
    filler = make(tmp_path, store)
    await filler.open(KEY)
    filler.health.fault(OSError(errno.ENOENT, "a stray one"))
    assert await filler.probe()  # the same directory, whole and writable: that was not it
    filler.health.fault(OSError(errno.ENOSPC, "full"))
    os.rmdir(filler.cache.tmp_dir)  # the probe cannot write
    assert not await filler.probe()
    assert filler.health.condition == health.GONE
    shutil.rmtree(filler.cache.path)
    for directory in ("entries", "tmp", "trash"):  # made again in its place
        (filler.cache.path / directory).mkdir(parents=True)
    assert not await filler.probe()  # another directory: its socket went with the old one
    assert filler.health.condition == health.GONE
    await filler.close()


# -- versions ----------------------------------------------------------------------------


@run
async def test_a_new_version_found_by_a_check_replaces_the_entry(tmp_path: Path) -> None:
    store = MemStore(chunk=BS)
    old = pattern(6 * BS)
    old_etag = store.put(KEY, old)
    filler = make(tmp_path, store)
    await filler.open(KEY)
    await collect(filler, range(2))
    store.hold_after = BS
    waiting = asyncio.ensure_future(collect(filler, range(2, 6), etag=old_etag))
    await until(lambda: store.held == 1)
    new = pattern(3 * BS, 999)
    new_etag = store.put(KEY, new)
    meta = await filler.open(KEY, check=True)
    assert meta.etag == new_etag and meta.size == 3 * BS
    outcomes = await waiting  # every waiter on the old version is told
    assert outcomes[2] is None  # it landed before the stall
    assert all(isinstance(outcomes[i], PreconditionFailed) for i in range(3, 6))
    assert filler.stats.version_changes == 1
    store.gate.set()
    store.hold_after = None
    assert await collect(filler, range(3), etag=new_etag) == dict.fromkeys(range(3))
    assert on_disk(filler) == expect(new, range(3))
    await filler.close()


@run
async def test_a_fetch_that_finds_the_object_changed_drops_the_entry(tmp_path: Path) -> None:
    store = MemStore()
    data = pattern(4 * BS)
    old_etag = store.put(KEY, data)
    filler = make(tmp_path, store)
    await filler.open(KEY)
    store.faults = [Fault("change")]
    outcomes = await collect(filler, range(4))
    assert all(isinstance(o, PreconditionFailed) for o in outcomes.values())
    await until(lambda: filler.cache.open_reader(KEY) is None)
    assert filler.stats.version_changes == 1
    with pytest.raises(PreconditionFailed):
        await collect(filler, range(1), etag=old_etag)
    meta = await filler.open(KEY)  # no fresh check left: a HEAD finds the new version
    assert meta.etag == store.objects[KEY].etag != old_etag
    assert await collect(filler, range(4)) == dict.fromkeys(range(4))
    assert on_disk(filler) == expect(store.objects[KEY].data, range(4))
    await filler.close()


# -- read-ahead --------------------------------------------------------------------------


@run
async def test_a_sequential_reader_gets_blocks_fetched_ahead(tmp_path: Path) -> None:
    store = MemStore()
    data = pattern(64 * BS)
    store.put(KEY, data)
    filler = make(tmp_path, store, readahead=4)
    await filler.open(KEY)
    assert await collect(filler, range(2)) == {0: None, 1: None}
    await until(lambda: filler.stats.fills == 6)  # 0-1 asked, 2-5 read ahead
    assert await collect(filler, range(2, 4)) == {2: None, 3: None}  # already there
    await until(lambda: filler.stats.fills == 8)  # the reader went on: 6-7 ahead
    assert [(s // BS, e // BS) for _, s, e in store.reads] == [(0, 6), (6, 8)]
    assert await collect(filler, range(40, 41)) == {40: None}  # a jump: no read-ahead
    assert store.reads[-1] == (KEY, 40 * BS, 41 * BS)
    assert not filler._entries[KEY].pending  # nothing else was scheduled
    assert filler.stats.fills == 9
    assert on_disk(filler) == expect(data, [*range(8), 40])
    await filler.close()


# -- encryption and bad blocks -----------------------------------------------------------


@run
async def test_encrypted_blocks_hold_no_plaintext_and_bad_ones_are_refetched(
    tmp_path: Path,
) -> None:
    store = MemStore()
    data = pattern(5 * BS + 77)
    store.put(KEY, data)
    filler = make(tmp_path, store, cipher=BlockCipher(os.urandom(32)))
    await filler.open(KEY)
    assert await collect(filler, range(6)) == dict.fromkeys(range(6))
    assert on_disk(filler) == {i: data[i * BS : (i + 1) * BS] for i in range(6)}
    raw = (filler.cache.entry_path(KEY) / "data").read_bytes()
    assert data[:64] not in raw and b"<0000000000016>" not in raw
    corrupt(filler.cache.entry_path(KEY) / "data", 2 * (BS + BlockCipher.OVERHEAD) + 100)
    reader = filler.cache.open_reader(KEY)
    assert reader is not None
    with pytest.raises(BadBlock):
        reader.read_block(2)
    await asyncio.gather(filler.bad(KEY, 2), filler.bad(KEY, 2))
    assert filler.stats.bad_blocks == 1
    assert await collect(filler, range(2, 3)) == {2: None}
    assert store.reads[-1] == (KEY, 2 * BS, 3 * BS)
    assert reader.read_block(2) == data[2 * BS : 3 * BS]
    reader.close()
    await filler.bad(KEY, 3)  # a good block stays
    assert filler.stats.bad_blocks == 1 and len(store.reads) == 2
    await filler.close()


def corrupt(path: Path, offset: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b"\xff\x00\xff", offset)
    finally:
        os.close(fd)


# -- eviction and stopping ---------------------------------------------------------------


@run
async def test_fills_evict_least_recently_used_entries_to_stay_in_size(tmp_path: Path) -> None:
    store, clock = MemStore(), Clock()
    objects = {f"obj{i}": pattern(16 * BS, i * 7) for i in range(6)}
    for key, data in objects.items():
        store.put(key, data)
    limit = 200 * 1024

    def evictor(cache: CacheDir) -> Evictor:
        return Evictor(cache, max_size=limit, max_age=1e9, min_free=0, clock=clock)

    filler = make(tmp_path, store, evictor=evictor, clock=clock)
    await filler.start()
    for key in objects:
        await filler.open(key)
        assert await collect(filler, range(16), key) == dict.fromkeys(range(16))
        clock.now += 1
    assert filler.stats.evictions >= 2
    usage = list(filler.cache.entries())
    assert sum(u.size_bytes for u in usage) <= limit + 16 * BS + 3 * 4096
    left = {key for key in objects if filler.cache.open_reader(key) is not None}
    assert "obj5" in left and "obj0" not in left  # the oldest went first
    for key in left:
        assert on_disk(filler, key) == {i: objects[key][i * BS : (i + 1) * BS] for i in range(16)}
    await filler.close()


@run
async def test_idle_writers_beyond_max_open_are_closed_and_reloaded_from_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(filler_module, "MAX_OPEN", 2)
    store = MemStore()
    objects = {f"obj{i}": pattern(3 * BS, i) for i in range(4)}
    for key, data in objects.items():
        store.put(key, data)
    filler = make(tmp_path, store)
    first = None
    for key in objects:
        await filler.open(key)
        first = first or filler._entries[key]
        assert await collect(filler, range(3), key) == dict.fromkeys(range(3))
        await until(lambda: all(fill.idle for fill in filler._entries.values()))
        assert len(filler._entries) <= 2
    assert first is not None and first.dropped  # its writer was closed
    heads, reads = store.stats, len(store.reads)
    await filler.open("obj0")
    assert await collect(filler, range(3), "obj0") == dict.fromkeys(range(3))
    assert filler._entries["obj0"] is not first
    assert (store.stats, len(store.reads)) == (heads, reads)  # from disk, not the store
    assert on_disk(filler, "obj0") == expect(objects["obj0"], range(3))
    await filler.close()


@run
async def test_close_fails_waiters_and_stops_fetches(tmp_path: Path) -> None:
    store = MemStore(chunk=BS)
    store.put(KEY, pattern(8 * BS))
    store.hold_after = BS
    filler = make(tmp_path, store)
    await filler.open(KEY)
    waiting = asyncio.ensure_future(collect(filler, range(8)))
    await until(lambda: store.held == 1)
    await filler.close()
    outcomes = await waiting
    assert outcomes[0] is None
    assert all(isinstance(outcomes[i], Unavailable) for i in range(1, 8))
