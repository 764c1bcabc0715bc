"""The page-cache probes on a filesystem that refuses RWF_NOWAIT: never a blocking read."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from ferryman import pagecache


def test_a_filesystem_without_rwf_nowait_sends_every_read_to_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10_000)
    calls: list[int] = []

    def refusing_preadv(fd: int, buffers: list[bytearray], offset: int, flags: int = 0) -> int:
        calls.append(offset)
        raise OSError(errno.EOPNOTSUPP, "RWF_NOWAIT not supported")

    monkeypatch.setattr(pagecache, "_nowait_supported", True)
    monkeypatch.setattr(os, "preadv", refusing_preadv)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert pagecache.read_nowait(fd, 0, 100) is None  # cold, as far as callers know
        assert calls == [0]
        assert not pagecache.is_cached(fd, 0, 100)
        assert pagecache.read_nowait(fd, 50, 10) is None
        assert calls == [0]  # learnt once: the filesystem is not asked again
    finally:
        os.close(fd)


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
