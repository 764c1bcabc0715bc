"""Damage to a file on disk, as tests of integrity checks inflict it."""

from __future__ import annotations

import os
from pathlib import Path


def flip_byte(path: Path, offset: int | None = None, *, keep_mtime: bool = False) -> None:
    """Invert the byte at `offset` (the middle byte by default) in place: the size is
    kept, and with `keep_mtime` the modification time is put back too, so that only
    the bytes tell."""
    st = path.stat()
    at = st.st_size // 2 if offset is None else offset
    with open(path, "r+b") as handle:
        handle.seek(at)
        byte = handle.read(1)
        assert byte, f"{path} has no byte at {at}"
        handle.seek(at)
        handle.write(bytes([byte[0] ^ 0xFF]))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
