"""Eviction: the pure choice against a reference model, then the Evictor on real entries."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.cache.entry import CacheDir, EntryMeta, EntryUsage
from ferryman.cache.eviction import Evictor, choose_victims
from tests.serverproc import pattern

# -- choose_victims ---------------------------------------------------------------

NOW = 1_000_000.0


@st.composite
def usages(draw: st.DrawFn) -> list[EntryUsage]:
    count = draw(st.integers(0, 12))
    return [
        EntryUsage(
            id=f"{i:02d}",
            path=Path(f"/cache/{i:02d}"),
            size_bytes=draw(st.integers(0, 100)),
            last_used=NOW - draw(st.integers(0, 200)),
            in_use=draw(st.booleans()),
        )
        for i in range(count)
    ]


def reference(
    entries: list[EntryUsage],
    max_age: float,
    max_size: int,
    free_bytes: int,
    min_free: int,
    reserve: int,
) -> list[str]:
    """Evict one entry at a time, re-checking the limits from scratch each time."""
    kept = list(entries)
    victims: list[str] = []

    def evictable() -> list[EntryUsage]:
        return sorted((e for e in kept if not e.in_use), key=lambda e: (e.last_used, e.id))

    for entry in evictable():
        if NOW - entry.last_used > max_age:
            victims.append(entry.id)
            kept.remove(entry)

    def within_limits() -> bool:
        freed = sum(e.size_bytes for e in entries) - sum(e.size_bytes for e in kept)
        total = sum(e.size_bytes for e in kept)
        return total + reserve <= max_size and free_bytes + freed >= min_free + reserve

    while not within_limits() and evictable():
        oldest = evictable()[0]
        victims.append(oldest.id)
        kept.remove(oldest)
    return victims


@given(
    usages(),
    st.integers(0, 250),
    st.integers(0, 800),
    st.integers(0, 500),
    st.integers(0, 500),
    st.integers(0, 200),
)
def test_choice_matches_the_reference(
    entries: list[EntryUsage],
    max_age: int,
    max_size: int,
    free_bytes: int,
    min_free: int,
    reserve: int,
) -> None:
    victims = choose_victims(
        entries,
        now=NOW,
        max_age=max_age,
        max_size=max_size,
        free_bytes=free_bytes,
        min_free=min_free,
        reserve=reserve,
    )
    ids = [v.id for v in victims]
    assert ids == reference(entries, max_age, max_size, free_bytes, min_free, reserve)
    # invariants, stated on their own
    assert len(set(ids)) == len(ids)
    assert not any(v.in_use for v in victims)
    assert {e.id for e in entries if not e.in_use and NOW - e.last_used > max_age} <= set(ids)
    evicted = sum(v.size_bytes for v in victims)
    total = sum(e.size_bytes for e in entries)
    within = total - evicted + reserve <= max_size and free_bytes + evicted >= min_free + reserve
    assert within or {e.id for e in entries if not e.in_use} == set(ids)


def usage(name: str, size: int, age: float, in_use: bool = False) -> EntryUsage:
    return EntryUsage(name, Path(name), size, NOW - age, in_use)


def test_choice_examples() -> None:
    entries = [
        usage("old", 100, 500),
        usage("old-busy", 100, 600, in_use=True),
        usage("b", 100, 50),
        usage("a", 100, 60),
        usage("c", 100, 10),
    ]

    def choose(**limits: int) -> list[str]:
        args = {"max_age": 100, "max_size": 10_000, "free_bytes": 10_000, "min_free": 0}
        args.update(limits)
        return [v.id for v in choose_victims(entries, now=NOW, **args)]

    assert choose() == ["old"]
    assert choose(max_size=300) == ["old", "a"]  # 500 total, 100 of it in use
    assert choose(max_size=300, reserve=100) == ["old", "a", "b"]
    assert choose(max_size=0) == ["old", "a", "b", "c"]  # never the busy one
    assert choose(free_bytes=0, min_free=250) == ["old", "a", "b"]
    assert choose(free_bytes=250, min_free=250, reserve=150) == ["old", "a"]
    assert choose(max_age=1000) == []


# -- Evictor on a real cache directory -------------------------------------------

BLOCK = 4096


def fill(cache: CacheDir, key: str, blocks: int, used_at: float) -> None:
    meta = EntryMeta(key, blocks * BLOCK, '"e"', 0, None, None, BLOCK)
    with cache.create(meta) as writer:
        for index in range(blocks):
            writer.write_block(index, pattern(BLOCK, index * BLOCK))
    os.utime(cache.entry_path(key) / "used", (used_at, used_at))


def fake_statvfs(free: int) -> os.statvfs_result:
    return os.statvfs_result((4096, 1, 10**12, free, free, 1000, 1000, 1000, 0, 255))


@pytest.fixture
def cache(tmp_path: Path) -> CacheDir:
    return CacheDir(tmp_path / "cache", namespace="s3://b", cipher=None)


def cached(cache: CacheDir) -> set[str]:
    return {key for key in ("a", "b", "c", "d") if cache.entry_path(key).exists()}


def test_evicts_by_age_but_never_what_a_reader_holds(cache: CacheDir) -> None:
    now = time.time()
    fill(cache, "a", 1, now - 7200)
    fill(cache, "b", 1, now - 7200)
    fill(cache, "c", 1, now)
    reader = cache.open_reader("b")
    assert reader is not None and reader.acquire()
    evictor = Evictor(cache, max_size=10**12, max_age=3600, min_free=0)
    report = evictor.run()
    assert cached(cache) == {"b", "c"}
    assert (report.entries, report.evicted) == (3, 1)
    assert report.evicted_bytes > BLOCK
    assert reader.read_block(0) == pattern(BLOCK)
    reader.release()
    assert evictor.run().evicted == 1
    assert cached(cache) == {"c"}
    assert not reader.acquire()
    reader.close()
    assert list((cache.path / "trash").iterdir()) == []


def test_evicts_least_recently_used_down_to_the_size_limit(cache: CacheDir) -> None:
    now = time.time()
    for age, key in enumerate("dcba"):  # a is the oldest use
        fill(cache, key, 4, now - 10 * age)
    sizes = {u.id: u.size_bytes for u in cache.entries()}
    each = max(sizes.values())
    assert each >= 4 * BLOCK
    evictor = Evictor(cache, max_size=2 * each, max_age=3600, min_free=0)
    report = evictor.run()
    assert cached(cache) == {"c", "d"}
    assert report.evicted == 2 and report.total_bytes == sum(sizes.values())
    assert evictor.run().evicted == 0
    # room for a fill that is about to start
    assert evictor.run(reserve=1).evicted == 1
    assert cached(cache) == {"d"}


def test_evicts_to_keep_free_space(cache: CacheDir) -> None:
    now = time.time()
    for age, key in enumerate("dcba"):
        fill(cache, key, 2, now - 10 * age)
    each = max(u.size_bytes for u in cache.entries())
    free = 1000
    evictor = Evictor(
        cache,
        max_size=10**12,
        max_age=3600,
        min_free=free + each + 1,  # two entries must go
        statvfs=lambda path: fake_statvfs(free),
    )
    report = evictor.run()
    assert report.free_bytes == free
    assert cached(cache) == {"c", "d"}


def test_victim_taken_by_a_reader_after_the_scan_is_kept(cache: CacheDir) -> None:
    fill(cache, "a", 1, time.time())
    (scanned,) = list(cache.entries())
    assert not scanned.in_use
    reader = cache.open_reader("a")
    assert reader is not None and reader.acquire()
    assert not cache.drop_if_unused(scanned)
    reader.close()
    assert cache.drop_if_unused(scanned)
    assert cached(cache) == set()


def test_clock_is_injected_for_age(cache: CacheDir) -> None:
    fill(cache, "a", 1, 1000.0)
    evictor = Evictor(cache, max_size=10**12, max_age=60, min_free=0, clock=lambda: 1050.0)
    assert evictor.run().evicted == 0
    evictor = Evictor(cache, max_size=10**12, max_age=60, min_free=0, clock=lambda: 1061.0)
    assert evictor.run().evicted == 1
