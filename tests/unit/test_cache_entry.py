"""Cache entries on real files: create, write, read, drop, recover, usage.

Every test runs plain and encrypted; encrypted entries seal each block as
segments of SEGMENT bytes, so blocks span several segments. Block contents
come from the self-identifying pattern, so a block read from the wrong place
shows where it came from.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.cache.crypto import BadBlock, BlockCipher
from ferryman.cache.entry import CacheDir, EntryMeta, EntryReader, EntryWriter
from ferryman.cache.entryfiles import data_length
from ferryman.http.spans import Span
from tests.damage import flip_byte
from tests.serverproc import pattern

BLOCK = 4096
SIZE = 5 * BLOCK + 1000  # six blocks, the last one short
SEGMENT = 1000  # five segments per block, the last 96 bytes; the last block's one
KEY = "dir/object.bin"
SOURCE = "s3://bucket/prefix at http://127.0.0.1:9"


def meta_for(key: str = KEY, size: int = SIZE, etag: str = '"v1"') -> EntryMeta:
    return EntryMeta(
        key=key,
        size=size,
        etag=etag,
        last_modified=1_700_000_000,
        content_type="application/octet-stream",
        sha256=None,
        block_size=BLOCK,
    )


def block(meta: EntryMeta, index: int, salt: int = 0) -> bytes:
    span = meta.block_span(index)
    return pattern(span.length, span.start + salt * 1_000_000)


@pytest.fixture(params=["plain", "encrypted"])
def cache(request: pytest.FixtureRequest, tmp_path: Path) -> CacheDir:
    cipher = BlockCipher(os.urandom(32)) if request.param == "encrypted" else None
    return CacheDir(tmp_path / "cache", namespace=SOURCE, cipher=cipher, segment_size=SEGMENT)


@pytest.fixture
def sealed_cache(tmp_path: Path) -> CacheDir:
    cipher = BlockCipher(os.urandom(32))
    return CacheDir(tmp_path / "sealed", namespace=SOURCE, cipher=cipher, segment_size=SEGMENT)


@pytest.fixture
def writer(cache: CacheDir) -> Iterator[EntryWriter]:
    w = cache.create(meta_for())
    yield w
    w.close()


def reader_of(cache: CacheDir, key: str = KEY) -> EntryReader:
    reader = cache.open_reader(key)
    assert reader is not None
    return reader


def region_bytes(reader: EntryReader, start: int, length: int) -> bytes:
    region = reader.region(Span(start, start + length))
    return os.pread(region.fd, region.count, region.offset)


def test_create_builds_the_layout(cache: CacheDir, writer: EntryWriter) -> None:
    path = cache.entry_path(KEY)
    entry_id = cache.entry_id(KEY)
    assert path == cache.path / "entries" / entry_id[:2] / entry_id
    assert sorted(p.name for p in path.iterdir()) == ["data", "map", "meta", "used"]
    assert (path / "map").read_bytes() == bytes(6)
    assert (path / "data").stat().st_size == data_length(writer.meta)
    assert (path / "used").read_bytes() == b""
    assert list((cache.path / "tmp").iterdir()) == []
    for item in path.iterdir():
        assert stat.S_IMODE(item.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert writer.present == bytearray(6)
    meta_raw = (path / "meta").read_bytes()
    if cache.encrypted:
        assert KEY.encode() not in meta_raw and b"v1" not in meta_raw
    else:
        assert json.loads(meta_raw)["key"] == KEY


def test_blocks_written_read_back_exactly(cache: CacheDir, writer: EntryWriter) -> None:
    meta = writer.meta
    for index in (5, 0, 3):
        writer.write_block(index, block(meta, index))
    assert writer.present == bytearray([1, 0, 0, 1, 0, 1])
    with reader_of(cache) as reader:
        assert reader.meta == meta
        assert reader.encrypted == cache.encrypted
        assert reader.missing(range(6)) == [1, 2, 4]
        assert all(reader.present(range(i, i + 1)) for i in (0, 3, 5))
        assert not reader.present(range(2)) and not reader.present(range(2, 6))
        assert reader.present(range(4, 4))  # no blocks
        for index in (0, 3, 5):
            assert reader.read_block(index) == block(meta, index)
        if cache.encrypted:
            with pytest.raises(ValueError):
                reader.region(Span(0, 10))
        else:
            assert region_bytes(reader, 3 * BLOCK + 5, 100) == pattern(100, 3 * BLOCK + 5)
            assert region_bytes(reader, 5 * BLOCK, 1000) == pattern(1000, 5 * BLOCK)
            with pytest.raises(ValueError):
                reader.region(Span(SIZE - 10, SIZE + 1))


def test_write_block_checks_its_length_and_index(writer: EntryWriter) -> None:
    with pytest.raises(ValueError):
        writer.write_block(0, b"x" * (BLOCK - 1))
    with pytest.raises(ValueError):
        writer.write_block(5, b"x" * BLOCK)  # the last block is 1000 bytes
    with pytest.raises(IndexError):
        writer.write_block(6, b"x" * BLOCK)
    assert writer.present == bytearray(6)


def test_blocks_written_from_many_threads(cache: CacheDir, writer: EntryWriter) -> None:
    meta = writer.meta
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: writer.write_block(i, block(meta, i)), range(6)))
    with reader_of(cache) as reader:
        assert reader.present(range(6))
        assert b"".join(reader.read_block(i) for i in range(6)) == pattern(SIZE)


def test_open_writer_loads_the_map(cache: CacheDir, writer: EntryWriter) -> None:
    writer.write_block(2, block(writer.meta, 2))
    writer.close()
    again = cache.open_writer(KEY)
    assert again is not None
    with again:
        assert again.meta == writer.meta
        assert again.meta.segment_size == (SEGMENT if cache.encrypted else 0)
        assert again.present == bytearray([0, 0, 1, 0, 0, 0])
        again.write_block(4, block(again.meta, 4))
    assert cache.open_writer("no/such/key") is None


def test_rewriting_a_present_block_keeps_it_right(cache: CacheDir, writer: EntryWriter) -> None:
    writer.write_block(1, block(writer.meta, 1))
    writer.write_block(1, block(writer.meta, 1))
    with reader_of(cache) as reader:
        assert reader.read_block(1) == block(writer.meta, 1)


def test_clear_and_verify(cache: CacheDir, writer: EntryWriter) -> None:
    writer.write_block(0, block(writer.meta, 0))
    assert writer.verify_block(0)
    writer.clear_block(0)
    assert writer.present[0] == 0
    with reader_of(cache) as reader:
        assert reader.missing(range(1)) == [0]


STRIDE = SEGMENT + BlockCipher.OVERHEAD  # from one sealed segment to the next


def test_flipped_byte_in_one_segment_is_bad_and_the_others_still_read(
    sealed_cache: CacheDir,
) -> None:
    cache = sealed_cache
    writer = cache.create(meta_for())
    writer.write_block(2, block(writer.meta, 2))
    assert writer.slot == BLOCK + 5 * BlockCipher.OVERHEAD
    flip_byte(cache.entry_path(KEY) / "data", 2 * writer.slot + 3 * STRIDE + 100)  # segment 3
    assert not writer.verify_block(2)
    writer.close()
    start = 2 * BLOCK
    with reader_of(cache) as reader:
        with pytest.raises(BadBlock):
            reader.read_block(2)
        with pytest.raises(BadBlock):  # a piece that needs segment 3
            reader.read_piece(2, Span(start + 2990, start + 3010))
        # pieces held by other segments open: only the segments a piece needs are read
        assert reader.read_piece(2, Span(start, start + 3000)) == pattern(3000, start)
        assert reader.read_piece(2, Span(start + 4000, start + BLOCK)) == pattern(96, start + 4000)


def test_swapped_segments_of_a_block_are_bad(sealed_cache: CacheDir) -> None:
    cache = sealed_cache
    writer = cache.create(meta_for())
    writer.write_block(1, block(writer.meta, 1))
    data = cache.entry_path(KEY) / "data"
    raw = data.read_bytes()
    at = writer.slot
    first, second = raw[at : at + STRIDE], raw[at + STRIDE : at + 2 * STRIDE]
    with open(data, "r+b") as f:
        f.seek(at)
        f.write(second + first)
    assert not writer.verify_block(1)
    writer.close()
    with reader_of(cache) as reader:
        for piece in (Span(BLOCK, BLOCK + 10), Span(BLOCK + 1500, BLOCK + 1510)):
            with pytest.raises(BadBlock):
                reader.read_piece(1, piece)
        assert reader.read_piece(1, Span(BLOCK + 2000, BLOCK + 2100)) == pattern(100, BLOCK + 2000)


def test_sealed_block_moved_to_another_slot_is_bad(sealed_cache: CacheDir) -> None:
    cache = sealed_cache
    writer = cache.create(meta_for())
    writer.write_block(0, block(writer.meta, 0))
    writer.write_block(1, block(writer.meta, 1))
    data = cache.entry_path(KEY) / "data"
    slot = writer.slot
    raw = data.read_bytes()
    with open(data, "r+b") as f:
        f.seek(slot)
        f.write(raw[:slot])  # block 0's sealed bytes where block 1 belongs
    assert not writer.verify_block(1)
    assert writer.verify_block(0)
    writer.close()
    with reader_of(cache) as reader, pytest.raises(BadBlock):
        reader.read_block(1)


def test_a_truncated_data_file_is_bad_not_short(sealed_cache: CacheDir) -> None:
    cache = sealed_cache
    writer = cache.create(meta_for())
    for index in range(6):
        writer.write_block(index, block(writer.meta, index))
    data = cache.entry_path(KEY) / "data"
    cut = 5 * writer.slot + 500  # inside the last block's only segment
    os.truncate(data, cut)
    assert not writer.verify_block(5)
    os.truncate(data, 4 * writer.slot + 2 * STRIDE + 10)  # inside block 4's segment 2
    assert not writer.verify_block(4)
    writer.close()
    with reader_of(cache) as reader:
        for index, piece in (
            (5, Span(5 * BLOCK, 5 * BLOCK + 1)),
            (4, Span(4 * BLOCK + 2100, 4 * BLOCK + 2101)),
        ):
            with pytest.raises(BadBlock):
                reader.read_piece(index, piece)
        with pytest.raises(BadBlock):
            reader.read_chunks_nowait(5, Span(5 * BLOCK, 5 * BLOCK + 1))
        assert reader.read_piece(4, Span(4 * BLOCK, 4 * BLOCK + 2000)) == pattern(2000, 4 * BLOCK)
        assert reader.read_chunks(4, Span(4 * BLOCK + 10, 4 * BLOCK + 1990)) == [
            pattern(990, 4 * BLOCK + 10), pattern(990, 4 * BLOCK + 1000)]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.integers(0, SIZE - 1), st.integers(1, SIZE), st.sampled_from([1, 7, 1000, 4096, 5000]))
def test_every_piece_of_a_sealed_entry_reads_exactly(
    tmp_path_factory: pytest.TempPathFactory, start: int, length: int, segment_size: int
) -> None:
    """Any range, cut at block boundaries as the stream cuts it, across segment boundaries."""
    root = tmp_path_factory.mktemp("pieces")
    cache = CacheDir(root, namespace=SOURCE, cipher=CIPHER, segment_size=segment_size)
    with cache.create(meta_for()) as writer:
        for index in range(6):
            writer.write_block(index, block(writer.meta, index))
    span = Span(start, min(SIZE, start + length))
    with reader_of(cache) as reader:
        got = b"".join(reader.read_piece(i, piece) for i, piece in span.split(BLOCK))
        nowait = [reader.read_chunks_nowait(i, piece) for i, piece in span.split(BLOCK)]
        chunks = [reader.read_chunks(i, piece) for i, piece in span.split(BLOCK)]
        assert reader.whole_nowait() in (None, pattern(SIZE))
    assert got == pattern(span.length, start)
    assert b"".join(b"".join(c) for c in chunks) == got
    for n, (_, p) in zip(nowait, span.split(BLOCK), strict=True):  # None: not in the page cache
        assert n is None or b"".join(n) == pattern(p.length, p.start)


def test_pieces_opened_at_once_in_many_threads_each_read_their_own_bytes(
    sealed_cache: CacheDir,
) -> None:
    """Sealed bytes read without waiting land in a buffer kept per thread: pieces opened
    at once from eight threads never see each other's bytes (a shared buffer would
    fail their check, or worse)."""
    with sealed_cache.create(meta_for()) as writer:
        for index in range(6):
            writer.write_block(index, block(writer.meta, index))
    spans = [Span(s, min(SIZE, s + n)) for s in range(0, SIZE, 997) for n in (1, 3000, 9000)]

    def opened(span: Span) -> bytes | None:
        chunks = [reader.read_chunks_nowait(i, piece) for i, piece in span.split(BLOCK)]
        return None if None in chunks else b"".join(b"".join(c) for c in chunks if c)

    with reader_of(sealed_cache) as reader, ThreadPoolExecutor(8) as pool:
        read = 0
        for _ in range(20):
            for span, got in zip(spans, pool.map(opened, spans), strict=True):
                if got is not None:  # None: not in the page cache
                    assert got == pattern(span.length, span.start)
                    read += 1
    if not read:
        pytest.skip("this filesystem lacks RWF_NOWAIT: nothing is read without waiting")


CIPHER = BlockCipher(bytes(32))


def test_an_entry_of_the_layout_before_segments_is_never_read(sealed_cache: CacheDir) -> None:
    """Sealed whole (one nonce and tag per block) under the same key: dropped, not misread."""
    cache = sealed_cache
    assert cache.cipher is not None
    cache.create(meta_for()).close()
    path = cache.entry_path(KEY)
    entry_id = cache.entry_id(KEY)
    old_meta = json.dumps(
        {k: v for k, v in json.loads(meta_for().to_json()).items() if k != "segment_size"}
    ).encode()
    (path / "meta").write_bytes(cache.cipher.seal(old_meta, b"meta" + entry_id.encode()))
    sealed = cache.cipher.seal(
        block(meta_for(), 0), b"%s\0%s\0%d" % (entry_id.encode(), b'"v1"', 0)
    )
    os.truncate(path / "data", 0)
    (path / "data").write_bytes(sealed)
    (path / "map").write_bytes(b"\x01" + bytes(5))
    assert cache.open_reader(KEY) is None
    assert cache.open_writer(KEY) is None  # and dropped
    assert not path.exists()
    cache.create(meta_for()).close()
    (path / "meta").write_bytes(cache.cipher.seal(old_meta, b"meta" + entry_id.encode()))
    cache.recover()
    assert list(cache.entries()) == []


def test_create_replaces_and_old_reader_keeps_its_version(
    cache: CacheDir, writer: EntryWriter
) -> None:
    writer.write_block(0, block(writer.meta, 0))
    writer.close()
    old = reader_of(cache)
    assert old.acquire()
    new_meta = meta_for(etag='"v2"', size=2 * BLOCK)
    with cache.create(new_meta) as new_writer:
        assert new_writer.present == bytearray(2)
        new_writer.write_block(1, block(new_meta, 1, salt=2))
    # the old reader still reads the version it pinned
    assert old.meta.etag == '"v1"'
    assert old.read_block(0) == block(old.meta, 0)
    old.close()
    with reader_of(cache) as new:
        assert new.meta == new_writer.meta
        assert new.missing(range(2)) == [0]
        assert new.read_block(1) == block(new_meta, 1, salt=2)
    assert list((cache.path / "trash").iterdir()) == []


def test_drop_and_acquire(cache: CacheDir, writer: EntryWriter) -> None:
    writer.write_block(0, block(writer.meta, 0))
    before = reader_of(cache)
    cache.drop(KEY)
    cache.drop(KEY)  # absent: nothing to do
    assert cache.open_reader(KEY) is None
    assert not cache.entry_path(KEY).exists()
    assert not before.acquire()  # the caller treats it as a miss
    assert before.read_block(0) == block(before.meta, 0)  # its descriptors still read
    before.close()


def test_acquire_holds_a_shared_lock_until_release(cache: CacheDir, writer: EntryWriter) -> None:
    writer.close()  # the writer holds the lock too while it is open
    reader = reader_of(cache)
    probe = os.open(cache.entry_path(KEY) / "data", os.O_RDONLY)
    try:
        assert reader.acquire()
        assert reader.acquire()  # already held
        with pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        reader.release()
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(probe, fcntl.LOCK_UN)
        assert reader.acquire()
        reader.close()  # close releases too
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(probe)


def test_mark_checked_and_touch_used(cache: CacheDir, writer: EntryWriter) -> None:
    path = cache.entry_path(KEY)
    long_ago = 1_000_000_000
    os.utime(path / "meta", (long_ago, long_ago))
    os.utime(path / "used", (long_ago, long_ago))
    with reader_of(cache) as reader:
        assert reader.checked_at == long_ago
        reader.touch_used()
        assert (path / "used").stat().st_mtime > long_ago
        os.utime(path / "used", (long_ago, long_ago))
        reader.touch_used()  # within TOUCH_INTERVAL of its last touch: skipped
        assert (path / "used").stat().st_mtime == long_ago
    assert writer.checked_at > long_ago  # as it was when the writer opened
    writer.close()
    again = cache.open_writer(KEY)
    assert again is not None and again.checked_at == long_ago
    again.mark_checked()
    assert again.checked_at > long_ago
    again.touch_used()
    assert (path / "used").stat().st_mtime > long_ago
    again.close()
    with reader_of(cache) as reader:
        assert reader.checked_at > long_ago


def test_writer_follows_its_entry_not_the_name(cache: CacheDir, writer: EntryWriter) -> None:
    """A writer whose entry was replaced must not touch the new entry."""
    with cache.create(meta_for(etag='"v2"')) as newer:
        writer.write_block(0, block(writer.meta, 0))
        writer.mark_checked()
        assert newer.present == bytearray(6)
    with reader_of(cache) as reader:
        assert reader.meta.etag == '"v2"'
        assert reader.missing(range(6)) == list(range(6))


def test_empty_object(cache: CacheDir) -> None:
    with cache.create(meta_for(size=0)) as w:
        assert w.present == bytearray()
    with reader_of(cache) as reader:
        assert reader.meta.block_count() == 0
        assert reader.missing(range(0)) == []
        if not cache.encrypted:
            assert region_bytes(reader, 0, 0) == b""


def test_open_reader_of_a_missing_or_broken_entry_is_none(cache: CacheDir) -> None:
    assert cache.open_reader(KEY) is None
    path = cache.entry_path(KEY)
    path.mkdir(parents=True)
    (path / "meta").write_bytes(b"{torn")
    assert cache.open_reader(KEY) is None


def test_recover_cleans_tmp_trash_and_broken_entries(cache: CacheDir, tmp_path: Path) -> None:
    good = cache.create(meta_for("good"))
    good.write_block(1, block(good.meta, 1))
    good.close()
    for key in ("torn", "no-map", "short-map"):
        cache.create(meta_for(key)).close()
    (cache.entry_path("torn") / "meta").write_bytes(b'{"key": "torn", "si')
    (cache.entry_path("no-map") / "map").unlink()
    os.truncate(cache.entry_path("short-map") / "map", 3)
    # an entry of another source that shares the directory
    other = CacheDir(cache.path, namespace="s3://other", cipher=cache.cipher)
    other.create(meta_for("theirs")).close()
    (cache.path / "tmp" / "half-made").mkdir()
    (cache.path / "tmp" / "half-made" / "meta").write_bytes(b"x")
    (cache.path / "trash" / "half-gone").mkdir()
    (cache.path / "entries" / "zz").mkdir()
    (cache.path / "entries" / "zz" / "not-an-entry").mkdir()

    cache.recover()

    assert list((cache.path / "tmp").iterdir()) == []
    assert list((cache.path / "trash").iterdir()) == []
    assert [e.id for e in cache.entries()] == [cache.entry_id("good")]
    with reader_of(cache, "good") as reader:
        assert reader.missing(range(6)) == [0, 2, 3, 4, 5]
        assert reader.read_block(1) == block(reader.meta, 1)


def test_recover_drops_entries_of_the_other_mode_or_key(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    plain = CacheDir(root, namespace=SOURCE, cipher=None)
    plain.create(meta_for("plain")).close()
    sealed = CacheDir(root, namespace=SOURCE, cipher=BlockCipher(os.urandom(32)))
    sealed.create(meta_for("sealed")).close()
    other_key = CacheDir(root, namespace=SOURCE, cipher=BlockCipher(os.urandom(32)))
    other_key.recover()
    assert list(other_key.entries()) == []
    # and the other way round: sealed entries are dropped by a plain cache
    sealed.create(meta_for("sealed")).close()
    plain.create(meta_for("plain")).close()
    plain.recover()
    assert [e.id for e in plain.entries()] == [plain.entry_id("plain")]


def test_entries_report_usage(cache: CacheDir, writer: EntryWriter) -> None:
    (usage,) = list(cache.entries())
    assert usage.id == cache.entry_id(KEY)
    assert usage.path == cache.entry_path(KEY)
    assert usage.in_use  # the writer is open
    assert usage.last_used == (usage.path / "used").stat().st_mtime
    empty_size = usage.size_bytes
    for index in range(5):
        writer.write_block(index, block(writer.meta, index))
    writer.close()
    (usage,) = list(cache.entries())
    assert not usage.in_use
    assert usage.size_bytes >= empty_size + 5 * BLOCK
    with reader_of(cache) as reader:
        assert reader.acquire()
        assert [u.in_use for u in cache.entries()] == [True]
        reader.release()
        assert [u.in_use for u in cache.entries()] == [False]


def test_drop_if_unused(cache: CacheDir, writer: EntryWriter) -> None:
    writer.close()
    (usage,) = list(cache.entries())
    reader = reader_of(cache)
    assert reader.acquire()
    assert not cache.drop_if_unused(usage)
    assert cache.entry_path(KEY).exists()
    reader.release()
    assert cache.drop_if_unused(usage)
    assert not cache.entry_path(KEY).exists()
    assert not reader.acquire()
    reader.close()
    assert not cache.drop_if_unused(usage)  # already gone
    assert list((cache.path / "trash").iterdir()) == []


def test_drop_if_unused_spares_an_entry_used_or_made_again_since_the_scan(
    cache: CacheDir,
) -> None:
    cache.create(meta_for()).close()
    used = cache.entry_path(KEY) / "used"
    os.utime(used, (1_000_000_000, 1_000_000_000))
    (scanned,) = list(cache.entries())
    cache.create(meta_for(etag='"v2"')).close()  # cached again after the scan
    assert not cache.drop_if_unused(scanned)
    with reader_of(cache) as reader:
        assert reader.meta.etag == '"v2"'
    os.utime(used, (1_000_000_000, 1_000_000_000))
    (scanned,) = list(cache.entries())
    os.utime(used, (1_000_000_001, 1_000_000_001))  # a reader recorded a use
    assert not cache.drop_if_unused(scanned)
    (rescanned,) = list(cache.entries())
    assert cache.drop_if_unused(rescanned)
    assert cache.open_reader(KEY) is None
