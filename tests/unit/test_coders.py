"""The codings on the fly (app/coders.py, app/codedstream.py): each decoded by its own
library, the same bytes however the source is cut, and the compressible types."""

from __future__ import annotations

import asyncio
import os
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import brotli
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.app.codedstream import SourceShrank, coded_stream, coded_whole
from ferryman.app.coders import AVAILABLE, PIECE, compress_whole
from ferryman.app.compressible import compressible
from ferryman.app.mime import content_type
from ferryman.http.body import Body, FileRegion


def decode(coding: str, data: bytes) -> bytes:
    if coding == "gzip":
        return zlib.decompress(data, 31)
    if coding == "br":
        decoded: bytes = brotli.decompress(data)
        return decoded
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


TEXT = b"".join(b"line %d of some text, compressible\n" % i for i in range(60_000))


def test_every_coding_is_installed() -> None:
    assert AVAILABLE == ("zstd", "br", "gzip")


@pytest.mark.parametrize("coding", AVAILABLE)
def test_whole_bodies_decode_with_their_library(coding: str) -> None:
    coded = compress_whole(coding, TEXT)
    assert len(coded) < len(TEXT) // 4
    assert decode(coding, coded) == TEXT
    assert compress_whole(coding, TEXT) == coded  # the same bytes every time
    assert decode(coding, compress_whole(coding, b"")) == b""


async def _collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def _chunks(data: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    start = 0
    for cut in sorted(cuts):
        yield data[start:cut]
        start = max(start, cut)
    yield data[start:]


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from(AVAILABLE),
    st.lists(st.integers(0, 3 * PIECE), max_size=6),
)
def test_a_stream_codes_to_the_same_bytes_however_it_is_cut(coding: str, cuts: list[int]) -> None:
    data = TEXT[: 3 * PIECE]
    body = Body(stream=_chunks(data, cuts), length=len(data))
    coded = asyncio.run(_collect(coded_stream(body, coding)))
    assert coded == compress_whole(coding, data)


@pytest.mark.parametrize("coding", AVAILABLE)
def test_file_regions_and_literals_are_coded_in_order(coding: str, tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(TEXT)
    fd = os.open(path, os.O_RDONLY)
    try:
        parts = (b"head\n", FileRegion(fd, 100, 700_000), b"tail\n")
        expected = b"head\n" + TEXT[100:700_100] + b"tail\n"
        streamed = asyncio.run(_collect(coded_stream(Body(parts), coding)))
        assert decode(coding, streamed) == expected
        whole = asyncio.run(coded_whole(Body(parts), coding))
        assert whole == streamed == compress_whole(coding, expected)
    finally:
        os.close(fd)


def test_a_file_that_shrank_stops_the_stream(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(TEXT[:1000])
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(SourceShrank):
            asyncio.run(_collect(coded_stream(Body((FileRegion(fd, 0, 5000),)), "gzip")))
    finally:
        os.close(fd)


def test_a_short_stream_stops_the_stream() -> None:
    body = Body(stream=_chunks(b"abc" * 100, []), length=1000)
    with pytest.raises(SourceShrank):
        asyncio.run(_collect(coded_stream(body, "gzip")))


@pytest.mark.parametrize(
    "name",
    ["a.txt", "a.html", "a.css", "a.js", "a.mjs", "a.json", "a.svg", "a.xml", "a.wasm", "a.md",
     "a.csv", "a.yaml", "a.ttf", "a.ico"],
)  # fmt: skip
def test_text_like_types_are_compressible(name: str) -> None:
    assert compressible(content_type(name))


@pytest.mark.parametrize(
    "name",
    ["a.png", "a.jpg", "a.webp", "a.avif", "a.mp4", "a.webm", "a.mp3", "a.ogg", "a.zip",
     "a.gz", "a.tgz", "a.zst", "a.br", "a.bz2", "a.xz", "a.7z", "a.woff", "a.woff2", "a.bin",
     "noext", "a.pdf", "a.tar"],
)  # fmt: skip
def test_already_compressed_and_unknown_types_are_not(name: str) -> None:
    assert not compressible(content_type(name))
