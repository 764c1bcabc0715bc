"""The files every server serves: generated per run, deterministic content."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

SMALL_NAME = "1k.bin"
SMALL_SIZE = 1024
BIG_NAME = "100m.bin"
BIG_SIZE = 100 * 1024 * 1024
BLOCK_SIZE = 1024 * 1024
SEED = 20240601


@dataclass(frozen=True)
class TestFiles:
    root: Path

    @property
    def small_path(self) -> str:
        return "/" + SMALL_NAME

    @property
    def big_path(self) -> str:
        return "/" + BIG_NAME

    @property
    def big_size(self) -> int:
        return BIG_SIZE

    def big_bytes(self, start: int, length: int) -> bytes:
        with open(self.root / BIG_NAME, "rb") as f:
            f.seek(start)
            return f.read(length)


def _block(index: int) -> bytes:
    return random.Random(SEED + index).randbytes(BLOCK_SIZE)


def make_test_files(root: Path) -> TestFiles:
    """Write the 1 KiB and 100 MiB files; the same bytes on every run."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    (root / SMALL_NAME).write_bytes(_block(0)[:SMALL_SIZE])
    # Eight distinct 1 MiB blocks, repeated: cheap to make, and a shifted range
    # still differs from the right one.
    blocks = [_block(i) for i in range(8)]
    with open(root / BIG_NAME, "wb") as f:
        for i in range(BIG_SIZE // BLOCK_SIZE):
            f.write(blocks[i % len(blocks)])
    return TestFiles(root)
