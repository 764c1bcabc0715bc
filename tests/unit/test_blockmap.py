"""Block arithmetic against reference models that work byte by byte."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.cache.blockmap import block_count, block_span, missing_runs
from ferryman.http.spans import Span

sizes = st.integers(min_value=0, max_value=5000)
block_sizes = st.integers(min_value=1, max_value=700)


def reference_blocks(size: int, block_size: int) -> list[list[int]]:
    """The object's byte offsets, grouped by the block each one falls in."""
    blocks: list[list[int]] = []
    for offset in range(size):
        if offset % block_size == 0:
            blocks.append([])
        blocks[-1].append(offset)
    return blocks


@given(sizes, block_sizes)
def test_count_and_spans_tile_the_object(size: int, block_size: int) -> None:
    blocks = reference_blocks(size, block_size)
    assert block_count(size, block_size) == len(blocks)
    for index, offsets in enumerate(blocks):
        assert block_span(index, size, block_size) == Span(offsets[0], offsets[-1] + 1)


@given(sizes, block_sizes, st.data())
def test_span_outside_the_object_is_an_error(
    size: int, block_size: int, data: st.DataObject
) -> None:
    count = block_count(size, block_size)
    index = data.draw(st.one_of(st.integers(max_value=-1), st.integers(min_value=count)))
    with pytest.raises(IndexError):
        block_span(index, size, block_size)


@given(block_sizes, st.integers(0, 3000), st.integers(0, 3000))
def test_covering_matches_the_blocks_of_every_byte(block_size: int, a: int, b: int) -> None:
    start, end = min(a, b), max(a, b)
    expected = sorted({offset // block_size for offset in range(start, end)})
    covering = Span(start, end).blocks(block_size)
    assert list(covering) == expected
    assert isinstance(covering, range)


def test_covering_examples() -> None:
    assert Span(0, 0).blocks(10) == range(0)
    assert list(Span(0, 1).blocks(10)) == [0]
    assert list(Span(9, 11).blocks(10)) == [0, 1]
    assert list(Span(10, 20).blocks(10)) == [1]
    assert list(Span(10, 21).blocks(10)) == [1, 2]
    with pytest.raises(ValueError):
        Span(0, 4).blocks(0)


def reference_runs(present: bytes, blocks: range, max_run: int, skip: set[int]) -> list[list[int]]:
    wanted = [i for i in blocks if not present[i] and i not in skip]
    runs: list[list[int]] = []
    for index in wanted:
        if runs and runs[-1][-1] == index - 1 and len(runs[-1]) < max_run:
            runs[-1].append(index)
        else:
            runs.append([index])
    return runs


@given(
    st.binary(min_size=1, max_size=80).map(lambda b: bytes(x % 2 for x in b)),
    st.data(),
    st.integers(min_value=1, max_value=9),
)
def test_missing_runs_match_the_reference(
    present: bytes, data: st.DataObject, max_run: int
) -> None:
    first = data.draw(st.integers(0, len(present) - 1))
    stop = data.draw(st.integers(first, len(present)))
    skip = data.draw(st.sets(st.integers(0, len(present) - 1)))
    runs = missing_runs(present, range(first, stop), max_run, skip)
    assert [list(run) for run in runs] == reference_runs(present, range(first, stop), max_run, skip)
    # the same answer from a list of ints as from bytes
    assert missing_runs(list(present), range(first, stop), max_run, frozenset(skip)) == runs


def test_missing_runs_examples() -> None:
    present = bytes([1, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    assert missing_runs(present, range(10), 100) == [range(1, 4), range(5, 10)]
    assert missing_runs(present, range(10), 2) == [
        range(1, 3), range(3, 4), range(5, 7), range(7, 9), range(9, 10),
    ]  # fmt: skip
    assert missing_runs(present, range(2, 7), 100, skip={5}) == [range(2, 4), range(6, 7)]
    assert missing_runs(present, range(4, 5), 1) == []
    assert missing_runs(present, range(5, 5), 1) == []
    with pytest.raises(ValueError):
        missing_runs(present, range(10), 0)
