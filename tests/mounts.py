"""Small real filesystems for tests: a tmpfs of a given size, remounted read-only on demand.

Tests run as root (here and in CI), so a full or read-only disk is a real
one, not a chmod that root would ignore. Where mounting is refused the test
is skipped, saying why.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(where: Path, size: str, fill: Callable[[Path], object] | None = None,
          *, read_only: bool = False) -> Iterator[Path]:  # fmt: skip
    """A tmpfs of `size` ("8m", "64k") at `where` (made if missing), filled by `fill`,
    then remounted read-only if asked; unmounted at the end."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is refused here: {done.stderr.strip()}")
    try:
        if fill is not None:
            fill(where)
        if read_only:
            remount(where, "ro")
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def remount(where: Path, mode: str) -> bool:
    """Remount `where` "ro" or "rw"; False if the kernel refused (a file open for writing)."""
    done = subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], capture_output=True)
    return done.returncode == 0
