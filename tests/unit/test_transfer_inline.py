"""An answer sent in one write: the head and every part in one buffer, byte for byte."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman import pagecache
from ferryman.http.body import FileRegion, Part
from ferryman.server import transfer

DATA = bytes(range(256)) * 320  # 80 KiB


@pytest.fixture
def fd(tmp_path: Path) -> Iterator[int]:
    path = tmp_path / "f.bin"
    path.write_bytes(DATA)
    descriptor = os.open(path, os.O_RDONLY)
    if pagecache.read_nowait(descriptor, 0, 1) is None:
        os.close(descriptor)
        pytest.skip("this filesystem lacks RWF_NOWAIT")
    yield descriptor
    os.close(descriptor)


def test_regions_and_literals_land_in_place_after_the_head(fd: int) -> None:
    parts: list[Part] = [
        b"\r\n--b\r\n\r\n", FileRegion(fd, 100, 3000), b"\r\n--b\r\n\r\n",
        FileRegion(fd, 9000, 5000), FileRegion(fd, 0, 0), b"\r\n--b--\r\n",
    ]  # fmt: skip
    length = sum(p.count if isinstance(p, FileRegion) else len(p) for p in parts)
    got = transfer.inline_answer(b"HEAD\r\n\r\n", parts, length, small=16384)
    assert got == (
        b"HEAD\r\n\r\n" + b"\r\n--b\r\n\r\n" + DATA[100:3100] + b"\r\n--b\r\n\r\n"
        + DATA[9000:14000] + b"\r\n--b--\r\n"
    )  # fmt: skip


def test_a_body_kept_in_memory_is_joined_to_the_head(fd: int) -> None:
    assert transfer.inline_answer(b"H", [b"a", b"bc"], 3, small=16384) == b"Habc"


def test_a_region_past_the_end_of_the_file_is_not_inlined(fd: int) -> None:
    # The file is shorter than the region: the sendfile path finds that and aborts.
    assert transfer.inline_answer(b"H", [FileRegion(fd, len(DATA) - 10, 20)], 20, 16384) is None


@pytest.mark.parametrize(
    ("sizes", "inlined"),
    [([16384], True), ([16385], False), ([16384] * 4, True), ([16384] * 4 + [1], False)],
)
def test_what_is_small_enough(fd: int, sizes: list[int], inlined: bool) -> None:
    parts: list[Part] = [FileRegion(fd, 0, size) for size in sizes]
    length = sum(sizes)
    assert (transfer.inline_answer(b"", parts, length, 16384) is not None) is inlined
