"""Sealed segments (cache/segments.py): every piece opens to exactly its plaintext, and a
segment flipped, swapped, moved or cut short never opens."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.cache.crypto import BadBlock, BlockCipher
from ferryman.cache.segments import (
    OVERHEAD,
    block_aad,
    covering,
    open_piece,
    seal_block,
    sealed_length,
    sealed_run,
    segment_count,
)
from ferryman.http.spans import Span
from tests.serverproc import pattern

CIPHER = BlockCipher(bytes(range(32)))
AAD = block_aad("ab" * 32, '"v1"', 7)


@st.composite
def block_and_piece(draw: st.DrawFn) -> tuple[int, int, Span]:
    """(segment size, block length, a non-empty piece of the block)."""
    segment_size = draw(st.sampled_from([1, 7, 64, 1000, 4096]))
    length = draw(st.integers(1, 5000))
    start = draw(st.integers(0, length - 1))
    end = draw(st.integers(start + 1, length))
    return segment_size, length, Span(start, end)


def test_layout_arithmetic() -> None:
    assert segment_count(1, 4096) == 1 and segment_count(4096, 4096) == 1
    assert segment_count(4097, 4096) == 2 and segment_count(0, 4096) == 1
    assert sealed_length(1024 * 1024, 64 * 1024) == 1024 * 1024 + 16 * OVERHEAD
    assert covering(Span(0, 1), 100) == range(1)
    assert covering(Span(99, 101), 100) == range(2)
    assert covering(Span(100, 200), 100) == range(1, 2)
    # a run of the last, short segment ends where the sealed block does
    assert sealed_run(range(2, 3), 250, 100) == Span(2 * 128, sealed_length(250, 100))


@given(block_and_piece())
def test_every_piece_opens_to_exactly_its_plaintext(case: tuple[int, int, Span]) -> None:
    segment_size, length, piece = case
    plain = pattern(length, 12345)
    sealed = seal_block(CIPHER, plain, segment_size, AAD)
    assert len(sealed) == sealed_length(length, segment_size)
    run = sealed_run(covering(piece, segment_size), length, segment_size)
    assert 0 <= run.start < run.end <= len(sealed)
    got = open_piece(CIPHER, sealed[run.start : run.end], piece, length, segment_size, AAD)
    assert len(got) == len(covering(piece, segment_size))  # a chunk per segment opened
    assert b"".join(got) == plain[piece.start : piece.end]


@given(block_and_piece(), st.data())
def test_a_flipped_byte_in_a_covered_segment_never_opens(
    case: tuple[int, int, Span], data: st.DataObject
) -> None:
    segment_size, length, piece = case
    sealed = bytearray(seal_block(CIPHER, pattern(length), segment_size, AAD))
    run = sealed_run(covering(piece, segment_size), length, segment_size)
    where = data.draw(st.integers(run.start, run.end - 1))
    sealed[where] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(BadBlock):
        open_piece(CIPHER, bytes(sealed[run.start : run.end]), piece, length, segment_size, AAD)


def test_swapped_segments_moved_segments_and_short_ones_never_open() -> None:
    segment_size, length = 1000, 3500  # four segments, the last 500 bytes
    plain = os.urandom(length)
    sealed = seal_block(CIPHER, plain, segment_size, AAD)
    stride = segment_size + OVERHEAD
    first, second = sealed[:stride], sealed[stride : 2 * stride]
    swapped = second + first + sealed[2 * stride :]
    for piece in (Span(0, 10), Span(1500, 1510), Span(0, length)):
        run = sealed_run(covering(piece, segment_size), length, segment_size)
        with pytest.raises(BadBlock):
            open_piece(CIPHER, swapped[run.start : run.end], piece, length, segment_size, AAD)
    # segment 2 copied over segment 1 of the same block: bound to its index
    moved = sealed[:stride] + sealed[2 * stride : 3 * stride] + sealed[2 * stride :]
    with pytest.raises(BadBlock):
        open_piece(CIPHER, moved[stride : 2 * stride], Span(1000, 1001), length, segment_size, AAD)
    # the same segment under another block, entry or version
    for other in (
        block_aad("ab" * 32, '"v1"', 8),
        block_aad("cd" * 32, '"v1"', 7),
        block_aad("ab" * 32, '"v2"', 7),
    ):
        with pytest.raises(BadBlock):
            open_piece(CIPHER, sealed[:stride], Span(0, 10), length, segment_size, other)
    # cut short: the last segment without its tag, or no bytes at all
    last = sealed_run(range(3, 4), length, segment_size)
    for cut in (sealed[last.start : last.end - 1], b""):
        with pytest.raises(BadBlock):
            open_piece(CIPHER, cut, Span(3000, 3500), length, segment_size, AAD)
    # and the untouched segments of the original still open
    assert open_piece(CIPHER, sealed[last.start : last.end], Span(3000, 3500), length,
                      segment_size, AAD) == [plain[3000:]]  # fmt: skip


def test_segments_of_a_block_are_sealed_with_fresh_nonces() -> None:
    plain = bytes(4000)  # equal segments
    sealed = seal_block(CIPHER, plain, 1000, AAD)
    stride = 1000 + OVERHEAD
    nonces = {sealed[i * stride : i * stride + 12] for i in range(4)}
    bodies = {sealed[i * stride + 12 : (i + 1) * stride] for i in range(4)}
    assert len(nonces) == 4 and len(bodies) == 4
