"""Files whose pages are not in the page cache: the event loop must not read them.

posix_fadvise(DONTNEED) drops a file's clean pages, so RWF_NOWAIT reads miss
and ferryman takes its worker-thread path; every byte must still be right.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ferryman import pagecache
from ferryman.http.body import FileRegion
from ferryman.server import transfer
from tests.serverproc import ServerProcess, pattern

BIG = 5 * 1024 * 1024 + 7


def evict(path: Path) -> bool:
    """Drop the file's pages from the page cache; True if a probe then misses."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return pagecache.read_nowait(fd, 0, 4096) is None
    finally:
        os.close(fd)


def probe_misses_after_drop(fd: int, drop_from: int, count: int) -> bool:
    """Drop the file's pages from `drop_from` on, then probe bytes [0, count): True if the
    probe misses. A few tries: pages can come back between the drop and the probe for
    reasons outside the test (one CI run saw the whole file cached again)."""
    for _ in range(5):
        os.posix_fadvise(fd, drop_from, 0, os.POSIX_FADV_DONTNEED)
        if not pagecache.is_cached(fd, 0, count):
            return True
    return False


def test_probe_tells_cold_from_cached(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(pattern(1 << 20))
    os.sync()
    if not evict(path):
        pytest.skip("this filesystem keeps the pages (tmpfs) or lacks RWF_NOWAIT")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert probe_misses_after_drop(fd, 0, 1 << 20)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead past the page read
        assert os.pread(fd, 1, 0) == pattern(1)
        # All but that page dropped again: its first byte cached, its last cold.
        assert probe_misses_after_drop(fd, 4096, 1 << 20)
        assert pagecache.is_cached(fd, 0, 1)
        assert os.pread(fd, 1 << 20, 0) == pattern(1 << 20)  # a blocking read warms it
        assert pagecache.is_cached(fd, 0, 1 << 20)
        assert pagecache.read_nowait(fd, 4096, 16) == pattern(16, 4096)
        assert transfer.inline_parts([b"<", FileRegion(fd, 0, 32), b">"]) == (
            b"<" + pattern(32) + b">"
        )
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("headers", "start", "size"),
    [({}, 0, BIG), ({"Range": "bytes=3000000-3100000"}, 3000000, 100001), ({}, 0, 1000)],
    ids=["whole", "range", "small"],
)
def test_cold_files_are_served_exactly(
    server: ServerProcess, docroot: Path, headers: dict[str, str], start: int, size: int
) -> None:
    name = f"p{BIG}.bin" if size != 1000 else "p1000.bin"
    os.sync()
    evict(docroot / name)
    with server.connect() as conn:
        r = conn.get(f"/{name}", headers)
    assert r.body == pattern(size, start)
