"""Multipart sizing: every byte in a part, no part over the limit count, parts only grow."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ferryman.stores.s3upload import part_plan

MIB = 1024 * 1024


@given(
    size=st.integers(min_value=1, max_value=5 * 1024**4),
    part_size=st.integers(min_value=5 * MIB, max_value=5 * 1024**3),
    max_parts=st.integers(min_value=1, max_value=10_000),
)
def test_parts_cover_the_object_within_the_part_limit(
    size: int, part_size: int, max_parts: int
) -> None:
    chosen, count = part_plan(size, part_size, max_parts)
    assert chosen >= part_size  # never smaller than asked
    assert count <= max_parts
    assert (count - 1) * chosen < size <= count * chosen  # the last part holds the rest
    if chosen > part_size:  # grown only as far as the limit needs
        assert -(-size // (chosen - 1)) > max_parts


def test_examples() -> None:
    assert part_plan(12 * MIB + 3, 5 * MIB, 10_000) == (5 * MIB, 3)
    assert part_plan(100 * MIB, 5 * MIB, 10) == (10 * MIB, 10)
