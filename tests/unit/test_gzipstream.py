"""GzipStream: the bytes gzip.decompress gives, in bounded chunks, and why a stream stopped.

The reference is the standard library (gzip.compress to make streams,
the input itself to compare); damage is made by hand where zlib still
inflates (a trailer's CRC-32 or length changed) and where it does not.
"""

from __future__ import annotations

import gzip
import io
import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.app.gzipstream import GzipDamaged, GzipStream, GzipTruncated, NotGzip


def packed_in_members(data: bytes, cuts: list[int], level: int = 6) -> list[bytes]:
    """`data` as one gzip member per piece between the cuts (cat a.gz b.gz ...)."""
    bounds = sorted({0, len(data), *(min(c, len(data)) for c in cuts)})
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)] or [b""]
    return [gzip.compress(piece, compresslevel=level) for piece in pieces]


def drain(stream: GzipStream, limit: int) -> bytes:
    out = []
    while chunk := stream.chunk(limit):
        assert 1 <= len(chunk) <= limit
        out.append(chunk)
    return b"".join(out)


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=40_000) | st.builds(bytes, st.integers(0, 300_000)),
    cuts=st.lists(st.integers(0, 300_000), max_size=4),
    limit=st.integers(1, 100_000),
    level=st.sampled_from([0, 1, 9]),
)
def test_decompresses_every_member_in_bounded_chunks(
    data: bytes, cuts: list[int], limit: int, level: int
) -> None:
    members = packed_in_members(data, cuts, level)
    stream = GzipStream(io.BytesIO(b"".join(members)))
    assert drain(stream, limit) == data
    assert stream.ended and stream.position == len(data)
    assert stream.members == len(members)


@settings(max_examples=40, deadline=None)
@given(data=st.binary(min_size=1, max_size=20_000), cut=st.integers(0, 10**6))
def test_a_cut_short_stream_is_truncated_never_wrong(data: bytes, cut: int) -> None:
    packed = gzip.compress(data)
    cut = 2 + cut % (len(packed) - 2)  # keep the magic, lose at least the last byte
    stream = GzipStream(io.BytesIO(packed[:cut]))
    got = b""
    with pytest.raises(GzipTruncated):
        while chunk := stream.chunk(4096):
            got += chunk
    assert data.startswith(got)  # what came out before the cut is right


@pytest.mark.parametrize("field", ["crc", "isize"])
def test_a_trailer_that_does_not_match_is_damage(field: str) -> None:
    data = b"some bytes that inflate fine\n" * 100
    packed = gzip.compress(data)
    crc, size = struct.unpack("<II", packed[-8:])
    changed = struct.pack("<II", crc ^ 1, size) if field == "crc" else struct.pack("<II", crc, 1)
    stream = GzipStream(io.BytesIO(packed[:-8] + changed))
    with pytest.raises(GzipDamaged, match="incorrect"):
        drain(stream, 1 << 20)


def test_a_damaged_second_member_is_damage() -> None:
    second = bytearray(gzip.compress(b"second" * 1000))
    second[-5] ^= 0xFF  # its ISIZE
    stream = GzipStream(io.BytesIO(gzip.compress(b"first") + bytes(second)))
    assert stream.read(5) == b"first"
    with pytest.raises(GzipDamaged):
        drain(stream, 1 << 20)


@pytest.mark.parametrize("raw", [b"", b"x", b"plain text, not gzip", b"\x1f"])
def test_not_gzip(raw: bytes) -> None:
    with pytest.raises(NotGzip):
        GzipStream(io.BytesIO(raw)).chunk(10)


def test_padding_and_trailing_bytes_end_the_stream() -> None:
    for tail in (b"\0" * 70_000, b"not gzip", b"\0\0\0garbage"):
        stream = GzipStream(io.BytesIO(gzip.compress(b"abc") + tail))
        assert drain(stream, 2) == b"abc" and stream.ended


def test_read_skip_and_seek_go_forward_only() -> None:
    data = bytes(range(256)) * 1000
    stream = GzipStream(io.BytesIO(gzip.compress(data)))
    assert stream.read(10) == data[:10]
    assert stream.skip(90) == 90 and stream.tell() == 100
    assert stream.seek(5000) == 5000 and stream.read(3) == data[5000:5003]
    assert stream.seek(10, 1) == 5013
    with pytest.raises(ValueError, match="back"):
        stream.seek(0)
    assert stream.skip(10**9) == len(data) - 5013  # fewer at the end
    assert stream.read(10) == b""
