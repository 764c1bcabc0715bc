"""What the segment size of an encrypted cache entry costs (decisions/0039).

For each candidate size, a 1 MiB block is sealed as segments into a file
(in the page cache, as for a warm cache), then timed as ferryman's reader
reads it: the whole block (one GET streaming it), and a random unaligned
64 KiB piece (a Range request: the segments it covers). Also prints the disk
overhead per block (28 bytes per segment). Median of several repeats, one
core; compare the sizes with each other, not across runs.

    .venv/bin/python bench/micro/segment_size.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from functools import partial

from ferryman.cache.crypto import BlockCipher
from ferryman.cache.entryfiles import pread_exact
from ferryman.cache.segments import block_aad, covering, open_piece, seal_block, sealed_run
from ferryman.http.spans import Span

KIB = 1024
BLOCK = 1024 * KIB
PIECE = 64 * KIB
SIZES = [4 * KIB, 16 * KIB, 32 * KIB, 64 * KIB, 128 * KIB, 256 * KIB, BLOCK]


def read_piece(
    fd: int, cipher: BlockCipher, piece: Span, segment_size: int, aad: bytes
) -> list[bytes]:
    run = sealed_run(covering(piece, segment_size), BLOCK, segment_size)
    sealed = pread_exact(fd, run.length, run.start)
    return open_piece(cipher, sealed, piece, BLOCK, segment_size, aad)


def one_piece(
    fd: int, cipher: BlockCipher, starts: Iterator[int], segment_size: int, aad: bytes
) -> list[bytes]:
    start = next(starts)
    return read_piece(fd, cipher, Span(start, start + PIECE), segment_size, aad)


def per_call(fn: object, count: int, repeats: int) -> float:
    """Median microseconds per call of `fn` over `repeats` runs of `count` calls."""
    assert callable(fn)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(count):
            fn()
        times.append((time.perf_counter() - start) / count)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    cipher = BlockCipher(os.urandom(32))
    plain = os.urandom(BLOCK)
    aad = block_aad("0" * 64, '"etag"', 3)
    rng = random.Random(20240601)
    print(f"{'segment':>8} {'overhead/block':>15} {'whole block us':>15} {'64 KiB piece us':>16}")
    with tempfile.TemporaryFile() as tmp:
        fd = tmp.fileno()
        for size in SIZES:
            sealed = seal_block(cipher, plain, size, aad)
            os.ftruncate(fd, 0)
            os.pwrite(fd, sealed, 0)
            whole = Span(0, BLOCK)
            assert b"".join(read_piece(fd, cipher, whole, size, aad)) == plain
            starts = [rng.randrange(0, BLOCK - PIECE) for _ in range(256)]
            whole_us = per_call(partial(read_piece, fd, cipher, whole, size, aad), 50, args.repeats)
            piece_us = per_call(partial(one_piece, fd, cipher, iter(starts * 1000), size, aad),
                                500, args.repeats)  # fmt: skip
            overhead = len(sealed) - BLOCK
            print(f"{size // KIB:>6} K {overhead:>13} B {whole_us:>15.1f} {piece_us:>16.1f}")


if __name__ == "__main__":
    main()
