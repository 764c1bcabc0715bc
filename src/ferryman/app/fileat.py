"""Opening and stat-ing a path under the root without raising: the two system calls
every request for a local file makes.

`open_at` gives a descriptor or the negated errno, `identity_at` the five stat
fields a kept descriptor is checked against (app/openfiles.py) or the errno.
A miss is the 404 path, so it must not be dearer than a hit: os.open raising
FileNotFoundError cost more than the open itself, and os.stat builds twenty
fields for five. The compiled twin (_fileat.c) is used when it is built;
the functions below give the same answers and are used otherwise.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from ferryman import native

Identity = tuple[int, int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns
OpenAt = Callable[[int, str, int], int]
IdentityAt = Callable[[int, str], Identity | int]


def identity(st: os.stat_result) -> Identity:
    """What must not change for a path to still reach the file that was checked.

    The ctime is in it because a rename changes it: a file moved out of the
    root and reached again through a symlink at its old path is a new file to
    check, not the one that was.
    """
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _open_at_python(dir_fd: int, path: str, flags: int) -> int:
    """A descriptor of `path` opened relative to `dir_fd`, or -errno."""
    try:
        return os.open(path, flags, dir_fd=dir_fd)
    except OSError as exc:
        return -(exc.errno or errno.EIO)


def _identity_at_python(dir_fd: int, path: str) -> Identity | int:
    """What stat() of `path` (symlinks followed) says identifies it, or the errno."""
    try:
        st = os.stat(path, dir_fd=dir_fd)
    except OSError as exc:
        return exc.errno or errno.EIO
    return identity(st)


def _compiled() -> tuple[OpenAt, IdentityAt] | None:
    if native.STATUS != "compiled":  # FERRYMAN_PURE, or a build older than its sources
        return None
    try:
        from ferryman.app._fileat import identity_at as compiled_identity
        from ferryman.app._fileat import open_at as compiled_open
    except ImportError:
        return None
    return compiled_open, compiled_identity


_chosen = _compiled()
open_at: OpenAt = _chosen[0] if _chosen else _open_at_python
identity_at: IdentityAt = _chosen[1] if _chosen else _identity_at_python
