"""Reading files without blocking the event loop on a cold disk.

`read_nowait` returns only what the page cache already holds (preadv with
RWF_NOWAIT; `read_nowait_into` the same into a buffer the caller reuses),
`is_cached` guesses whether a region is cached from its two
ends, and `warm` reads a region in a worker thread so later reads (or
sendfile) find it cached. Used by the transfer writers and the small-file
cache alike.
"""

from __future__ import annotations

import os

_RWF_NOWAIT = getattr(os, "RWF_NOWAIT", 0)
_WARM_CHUNK = 1024 * 1024
_nowait_supported = bool(_RWF_NOWAIT)


def read_nowait(fd: int, offset: int, count: int) -> bytes | None:
    """Up to `count` bytes if they are in the page cache, else None (never blocks).

    Returns b"" at end of file. A partial answer means the rest is cold.
    """
    buf = bytearray(count)
    got = _preadv_nowait(fd, [buf], offset)
    if got < 0:
        return None
    if got < count:
        del buf[got:]
    return bytes(buf)


def read_nowait_into(fd: int, buffer: memoryview, offset: int) -> int:
    """Read into `buffer` what the page cache holds of its length at `offset`: the bytes
    read (0 at end of file, fewer than asked where the rest is cold), -1 if none are
    cached. For a caller that reuses one buffer instead of allocating one per read."""
    return _preadv_nowait(fd, [buffer], offset)


def is_cached(fd: int, offset: int, count: int) -> bool:
    """A cheap guess: the first and last byte of the region are in the page cache.

    A byte past the end counts as cached: there is nothing to wait for.
    """
    if _preadv_nowait(fd, _PROBE, offset) < 0:
        return False
    return count <= 1 or _preadv_nowait(fd, _PROBE, offset + count - 1) >= 0


# The probe's answer is whether the read would block, never the byte read, so
# one shared buffer serves every probe (from any thread): no allocation per
# request on the sendfile path.
_PROBE = [bytearray(1)]


def _preadv_nowait(fd: int, buffers: list[bytearray] | list[memoryview], offset: int) -> int:
    """Bytes read without waiting for the disk; -1 if that would mean waiting."""
    global _nowait_supported
    if not _nowait_supported:
        return -1
    try:
        return os.preadv(fd, buffers, offset, _RWF_NOWAIT)
    except BlockingIOError:
        return -1
    except OSError:  # filesystem without RWF_NOWAIT: always take the thread path
        _nowait_supported = False
        return -1


def warm(fd: int, offset: int, count: int) -> None:
    """Read a region in a worker thread so its pages are cached for sendfile."""
    end = offset + count
    while offset < end:
        data = os.pread(fd, min(_WARM_CHUNK, end - offset), offset)
        if not data:
            return
        offset += len(data)
