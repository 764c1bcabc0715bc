"""Reading files without blocking the event loop on a cold disk.

`read_nowait` returns only what the page cache already holds (preadv with
RWF_NOWAIT; `read_nowait_into` the same into a buffer the caller reuses),
`is_cached` guesses whether a region is cached from its two
ends, and `warm` reads a region in a worker thread so later reads (or
sendfile) find it cached. Used by the transfer writers and the small-file
cache alike.

The reads are made by `_pagecache.c` when it is built (one call each, no
list, no buffer views, no letting go of the GIL around a read that cannot
wait) and by its twins below otherwise; tests/unit/test_pagecache.py holds
them to the same answers. A filesystem that refuses RWF_NOWAIT is learnt
at its first refusal: every read after it goes to a thread.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from ferryman import native

_RWF_NOWAIT = getattr(os, "RWF_NOWAIT", 0)
_WARM_CHUNK = 1024 * 1024
_nowait_supported = bool(_RWF_NOWAIT)

Probe = Callable[[int, int, int], int]
ReadInto = Callable[[int, memoryview | bytearray, int], int]


def read_nowait(fd: int, offset: int, count: int) -> bytes | None:
    """Up to `count` bytes if they are in the page cache, else None (never blocks).

    Returns b"" at end of file. A partial answer means the rest is cold.
    """
    buf = bytearray(count)
    got = read_nowait_into(fd, buf, offset)
    if got < 0:
        return None
    if got < count:
        del buf[got:]
    return bytes(buf)


def read_nowait_into(fd: int, buffer: memoryview | bytearray, offset: int) -> int:
    """Read into `buffer` what the page cache holds of its length at `offset`: the bytes
    read (0 at end of file, fewer than asked where the rest is cold), -1 if none are
    cached. For a caller that reuses one buffer instead of allocating one per read."""
    global _nowait_supported
    if not _nowait_supported:
        return -1
    got = _read_into(fd, buffer, offset)
    if got >= 0:
        return got
    if got != -errno.EAGAIN:  # a filesystem without RWF_NOWAIT: always the thread path
        _nowait_supported = False
    return -1


def is_cached(fd: int, offset: int, count: int) -> bool:
    """A cheap guess: the first and last byte of the region are in the page cache.

    A byte past the end counts as cached: there is nothing to wait for.
    """
    global _nowait_supported
    if not _nowait_supported:
        return False
    answer = _probe(fd, offset, count)
    if answer < 0:  # as for a read: the filesystem is not asked again
        _nowait_supported = False
    return answer == 1


# -- the twins of _pagecache.c ---------------------------------------------------------------


def _read_into_python(fd: int, buffer: memoryview | bytearray, offset: int) -> int:
    """Bytes read into `buffer` without waiting for the disk, or -errno."""
    try:
        return os.preadv(fd, [buffer], offset, _RWF_NOWAIT)
    except OSError as exc:
        return -(exc.errno or errno.EIO)


def _probe_python(fd: int, offset: int, count: int) -> int:
    """1: the region's first and last byte are cached (or past the end); 0: reading
    one would wait; -errno: the read failed otherwise."""
    answer = _byte_cached(fd, offset)
    if answer == 1 and count > 1:
        answer = _byte_cached(fd, offset + count - 1)
    return answer


# The probe's answer is whether the read would block, never the byte read, so
# one shared buffer serves every probe (from any thread): no allocation per
# request on the sendfile path.
_PROBE = bytearray(1)


def _byte_cached(fd: int, offset: int) -> int:
    got = _read_into_python(fd, _PROBE, offset)
    if got >= 0:
        return 1
    return 0 if got == -errno.EAGAIN else got


def _compiled() -> tuple[Probe, ReadInto] | None:
    if native.STATUS != "compiled":  # FERRYMAN_PURE, or a build older than its sources
        return None
    try:
        from ferryman import _pagecache
    except ImportError:
        return None
    return _pagecache.probe, _pagecache.read_into


_chosen = _compiled()
_probe: Probe = _chosen[0] if _chosen else _probe_python
_read_into: ReadInto = _chosen[1] if _chosen else _read_into_python


def warm(fd: int, offset: int, count: int) -> None:
    """Read a region in a worker thread so its pages are cached for sendfile."""
    end = offset + count
    while offset < end:
        data = os.pread(fd, min(_WARM_CHUNK, end - offset), offset)
        if not data:
            return
        offset += len(data)
