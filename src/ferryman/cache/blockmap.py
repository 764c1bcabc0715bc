"""Block arithmetic of the cache: which bytes a block holds, and what to fetch.

An object of `size` bytes is cut into blocks of `block_size` bytes (the last
one shorter). Bytes are Spans (http/spans.py: which blocks hold a span is
`Span.blocks`), and blocks are Python ranges of indexes: both exclude their
end. Everything here is pure integer work; the entry files (entry.py) and
the filler decide what the answers mean on disk and on the wire.
"""

from __future__ import annotations

from collections.abc import Container, Sequence

from ferryman.http.spans import Span


def _check_block_size(block_size: int) -> None:
    if block_size <= 0:
        raise ValueError(f"block size must be positive, not {block_size}")


def block_count(size: int, block_size: int) -> int:
    """How many blocks an object of `size` bytes has (0 for an empty object)."""
    _check_block_size(block_size)
    if size < 0:
        raise ValueError(f"size must not be negative, not {size}")
    return -(-size // block_size)


def block_span(index: int, size: int, block_size: int) -> Span:
    """The object bytes block `index` holds, in an object of `size` bytes."""
    if not 0 <= index < block_count(size, block_size):
        raise IndexError(f"block {index} is outside an object of {size} bytes")
    return Span(index * block_size, (index + 1) * block_size).clamp(size)


def missing_runs(
    present: Sequence[int] | bytes,
    blocks: range,
    max_run: int,
    skip: Container[int] = (),
) -> list[range]:
    """Runs of consecutive blocks among `blocks` to fetch, in order.

    A block is to fetch when `present[i]` is 0 and it is not in `skip` (blocks
    already being fetched). Consecutive blocks form one run, cut every
    `max_run` blocks so that one ranged GET stays bounded.
    """
    if max_run <= 0:
        raise ValueError(f"max_run must be positive, not {max_run}")
    runs: list[range] = []
    run_start = -1
    for index in blocks:
        wanted = not present[index] and index not in skip
        if wanted and run_start < 0:
            run_start = index
        elif not wanted and run_start >= 0:
            runs.append(range(run_start, index))
            run_start = -1
        if run_start >= 0 and index + 1 - run_start == max_run:
            runs.append(range(run_start, index + 1))
            run_start = -1
    if run_start >= 0:
        runs.append(range(run_start, blocks.stop))
    return runs
