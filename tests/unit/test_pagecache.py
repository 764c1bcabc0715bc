"""Reads that never wait for the disk: the compiled probes (_pagecache.c) give the
answers of their Python twins, on pages cached and evicted, past the end and on a
closed descriptor; a filesystem that refuses RWF_NOWAIT sends every read to a
thread."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferryman import native, pagecache
from tests.leakcheck import growth

compiled = pagecache._compiled()
needs_build = pytest.mark.skipif(compiled is None, reason=f"not compiled ({native.STATUS})")
TWINS: list[tuple[pagecache.Probe, pagecache.ReadInto]] = [
    (pagecache._probe_python, pagecache._read_into_python)
]
if compiled is not None:
    TWINS.append(compiled)
SIZE = 64 * 1024


@pytest.mark.parametrize("refused", ["probe", "read"])
def test_a_filesystem_without_rwf_nowait_sends_every_read_to_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused: str
) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10_000)
    calls: list[int] = []

    def refusing_probe(fd: int, offset: int, count: int) -> int:
        calls.append(offset)
        return -errno.EOPNOTSUPP

    def refusing_read(fd: int, buffer: memoryview | bytearray, offset: int) -> int:
        calls.append(offset)
        return -errno.EOPNOTSUPP

    monkeypatch.setattr(pagecache, "_nowait_supported", True)
    monkeypatch.setattr(pagecache, "_probe", refusing_probe)
    monkeypatch.setattr(pagecache, "_read_into", refusing_read)
    fd = os.open(path, os.O_RDONLY)
    try:
        if refused == "probe":
            assert not pagecache.is_cached(fd, 0, 100)  # cold, as far as callers know
        else:
            assert pagecache.read_nowait(fd, 0, 100) is None
        assert calls == [0]
        assert not pagecache.is_cached(fd, 0, 100)
        assert pagecache.read_nowait(fd, 50, 10) is None
        assert pagecache.read_nowait_into(fd, bytearray(10), 50) == -1
        assert calls == [0]  # learnt once: the filesystem is not asked again
    finally:
        os.close(fd)


@pytest.fixture
def written(tmp_path: Path) -> Iterator[int]:
    """A descriptor of a 64 KiB file of known bytes, written to the disk."""
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * (SIZE // 256))
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    try:
        yield fd
    finally:
        os.close(fd)


def evict(fd: int) -> None:
    """Drop the file's clean pages from the page cache (where the filesystem can). A
    read that finds a page cold starts reading it ahead: let that end, then drop it too."""
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    time.sleep(0.05)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Lengths from 64 KiB up are read with the GIL let go (_pagecache.c's LONG_COPY).
@given(
    st.integers(0, SIZE + 5000),
    st.integers(0, SIZE + 5000),
    st.integers(0, 9000) | st.sampled_from([SIZE - 1, SIZE, SIZE + 4000]),
)
def test_the_twins_agree_on_cached_pages(
    written: int, offset: int, count: int, length: int
) -> None:
    os.pread(written, SIZE, 0)  # every page cached
    answers = set()
    for probe, read_into in TWINS:
        buffer = bytearray(b"\xee" * length)
        got = read_into(written, buffer, offset)
        answers.add((probe(written, offset, count), got, bytes(buffer)))
    assert len(answers) == 1
    cached, got, data = answers.pop()
    assert cached == 1  # cached, or past the end: nothing to wait for
    assert got == max(0, min(length, SIZE - offset))
    assert data[:got] == (bytes(range(256)) * (SIZE // 256))[offset : offset + got]


def test_the_twins_agree_on_evicted_pages_and_on_a_bad_descriptor(written: int) -> None:
    for probe, read_into in TWINS:
        evict(written)
        cold = probe(written, 0, SIZE)
        evict(written)
        read = read_into(written, bytearray(100), 0)
        # 0 and -EAGAIN where the filesystem dropped the pages (a disk); 1 and 100 where
        # it keeps them (tmpfs): the same answer from both twins either way.
        assert (cold, read) in ((0, -errno.EAGAIN), (1, 100)), (probe, cold, read)
        assert probe(0x7FFFFFFF, 0, 1) == -errno.EBADF
        assert read_into(0x7FFFFFFF, bytearray(1), 0) == -errno.EBADF


@needs_build
def test_bad_arguments_are_refused_not_misread(written: int) -> None:
    assert compiled is not None
    probe, read_into = compiled
    with pytest.raises(ValueError):
        probe(-1, 0, 1)
    with pytest.raises(ValueError):
        probe(written, -1, 1)
    with pytest.raises(BufferError):
        read_into(written, memoryview(b"read-only"), 0)  # bytes cannot be written into
    with pytest.raises(TypeError):
        probe(written, 0)  # type: ignore[call-arg]


@needs_build
def test_no_call_leaves_memory_behind(written: int) -> None:
    assert compiled is not None
    probe, read_into = compiled
    buffer = bytearray(100)

    def each() -> None:
        probe(written, 0, SIZE)
        read_into(written, buffer, 0)
        read_into(written, memoryview(buffer)[10:], 70_000)

    assert growth(each, __file__) < 64 * 1024


def test_reads_past_the_end_are_empty_and_count_as_cached(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    fd = os.open(path, os.O_RDONLY)
    try:
        if pagecache.read_nowait(fd, 0, 3) is None:
            pytest.skip("this filesystem lacks RWF_NOWAIT")
        assert pagecache.read_nowait(fd, 1, 10) == b"bc"  # a short answer: all there is
        assert pagecache.read_nowait(fd, 3, 10) == b""
        assert pagecache.is_cached(fd, 2, 100)  # its last byte lies past the end
    finally:
        os.close(fd)


def test_a_reused_buffer_holds_what_was_read_and_the_count_says_how_much(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 4)
    fd = os.open(path, os.O_RDONLY)
    buffer = bytearray(b"\xee" * 2000)  # bigger than the file, and not clean
    try:
        got = pagecache.read_nowait_into(fd, memoryview(buffer)[:300], 1000)
        if got < 0:
            pytest.skip("this filesystem lacks RWF_NOWAIT")
        assert got == 24  # to the end of the file, not the 300 asked
        assert bytes(buffer[:24]) == bytes(range(232, 256))
        assert buffer[24:300] == b"\xee" * 276  # past what was read: untouched, never read as data
        assert pagecache.read_nowait_into(fd, memoryview(buffer)[:10], 1024) == 0
    finally:
        os.close(fd)
