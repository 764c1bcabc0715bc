"""Block arithmetic against reference models that work byte by byte."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.cache.blockmap import block_count, block_span, blocks_covering, missing_runs

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
        assert block_span(index, size, block_size) == (offsets[0], len(offsets))


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
    covering = blocks_covering(start, end, block_size)
    assert list(covering) == expected
    assert isinstance(covering, range)


def test_covering_examples() -> None:
    assert blocks_covering(0, 0, 10) == range(0)
    assert list(blocks_covering(0, 1, 10)) == [0]
    assert list(blocks_covering(9, 11, 10)) == [0, 1]
    assert list(blocks_covering(10, 20, 10)) == [1]
    assert list(blocks_covering(10, 21, 10)) == [1, 2]
    with pytest.raises(ValueError):
        blocks_covering(5, 4, 10)
    with pytest.raises(ValueError):
        blocks_covering(0, 4, 0)


def reference_runs(
    present: bytes, first: int, last: int, max_run: int, skip: set[int]
) -> list[tuple[int, int]]:
    wanted = [i for i in range(first, last + 1) if not present[i] and i not in skip]
    runs: list[list[int]] = []
    for index in wanted:
        if runs and runs[-1][-1] == index - 1 and len(runs[-1]) < max_run:
            runs[-1].append(index)
        else:
            runs.append([index])
    return [(run[0], run[-1]) for run in runs]


@given(
    st.binary(min_size=1, max_size=80).map(lambda b: bytes(x % 2 for x in b)),
    st.data(),
    st.integers(min_value=1, max_value=9),
)
def test_missing_runs_match_the_reference(
    present: bytes, data: st.DataObject, max_run: int
) -> None:
    first = data.draw(st.integers(0, len(present) - 1))
    last = data.draw(st.integers(first - 1, len(present) - 1))
    skip = data.draw(st.sets(st.integers(0, len(present) - 1)))
    runs = missing_runs(present, first, last, max_run, skip)
    assert runs == reference_runs(present, first, last, max_run, skip)
    # the same answer from a list of ints as from bytes
    assert missing_runs(list(present), first, last, max_run, frozenset(skip)) == runs


def test_missing_runs_examples() -> None:
    present = bytes([1, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    assert missing_runs(present, 0, 9, 100) == [(1, 3), (5, 9)]
    assert missing_runs(present, 0, 9, 2) == [(1, 2), (3, 3), (5, 6), (7, 8), (9, 9)]
    assert missing_runs(present, 2, 6, 100, skip={5}) == [(2, 3), (6, 6)]
    assert missing_runs(present, 4, 4, 1) == []
    assert missing_runs(present, 5, 4, 1) == []
    with pytest.raises(ValueError):
        missing_runs(present, 0, 9, 0)
