"""Block arithmetic of the cache: which blocks hold which bytes, and what to fetch.

An object of `size` bytes is cut into blocks of `block_size` bytes (the last
one shorter). Everything here is pure integer work on block indexes; the
entry files (entry.py) and the filler decide what the answers mean on disk
and on the wire.
"""

from __future__ import annotations

from collections.abc import Container, Sequence


def _check_block_size(block_size: int) -> None:
    if block_size <= 0:
        raise ValueError(f"block size must be positive, not {block_size}")


def block_count(size: int, block_size: int) -> int:
    """How many blocks an object of `size` bytes has (0 for an empty object)."""
    _check_block_size(block_size)
    if size < 0:
        raise ValueError(f"size must not be negative, not {size}")
    return -(-size // block_size)


def block_span(index: int, size: int, block_size: int) -> tuple[int, int]:
    """(offset, length) of block `index` in an object of `size` bytes."""
    if not 0 <= index < block_count(size, block_size):
        raise IndexError(f"block {index} is outside an object of {size} bytes")
    offset = index * block_size
    return offset, min(block_size, size - offset)


def blocks_covering(start: int, end: int, block_size: int) -> range:
    """The indexes of the blocks holding object bytes [start, end) (end exclusive)."""
    _check_block_size(block_size)
    if start < 0 or end < start:
        raise ValueError(f"not a byte span: [{start}, {end})")
    if start == end:
        return range(0)
    return range(start // block_size, (end - 1) // block_size + 1)


def missing_runs(
    present: Sequence[int] | bytes,
    first: int,
    last: int,
    max_run: int,
    skip: Container[int] = (),
) -> list[tuple[int, int]]:
    """Runs (first, last inclusive) of blocks in [first, last] to fetch.

    A block is to fetch when `present[i]` is 0 and it is not in `skip` (blocks
    already being fetched). Consecutive blocks form one run, cut every
    `max_run` blocks so that one ranged GET stays bounded.
    """
    if max_run <= 0:
        raise ValueError(f"max_run must be positive, not {max_run}")
    runs: list[tuple[int, int]] = []
    run_start = -1
    for index in range(first, last + 1):
        wanted = not present[index] and index not in skip
        if wanted and run_start < 0:
            run_start = index
        elif not wanted and run_start >= 0:
            runs.append((run_start, index - 1))
            run_start = -1
        if run_start >= 0 and index - run_start + 1 == max_run:
            runs.append((run_start, index))
            run_start = -1
    if run_start >= 0:
        runs.append((run_start, last))
    return runs
