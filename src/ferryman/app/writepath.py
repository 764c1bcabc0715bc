"""Where a write lands: the parent directory, opened inside the root, step by step.

Each directory on the way is opened relative to the one before with
O_NOFOLLOW, so a symlink planted anywhere on the path cannot send a write
outside the root (or into the state directory): it is refused, not followed,
whatever --follow-symlinks says (that flag is about reading). Missing
directories are created (mode 0755 less the umask).

Blocking calls: run these in a worker thread.
"""

from __future__ import annotations

import errno
import os
import stat

from ferryman.errors import HttpError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_parent(root_fd: int, segments: tuple[str, ...], *, create: bool) -> int:
    """A descriptor of the directory `segments` under the root (the caller closes it)."""
    fd = os.dup(root_fd)
    try:
        for name in segments:
            if create:
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                next_fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _path_error(exc, name) from None
            os.close(fd)
            fd = next_fd
        return fd
    except BaseException:
        os.close(fd)
        raise


def existing(parent_fd: int, name: str) -> os.stat_result | None:
    """The entry `name` in the parent, not following a symlink; None if absent."""
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        raise HttpError(409, "conflict", f"{name!r} is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise HttpError(409, "conflict", f"{name!r} is not a regular file")
    return st


def _path_error(exc: OSError, name: str) -> HttpError:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return HttpError(409, "conflict", f"{name!r} on the path is not a plain directory")
    if exc.errno == errno.ENOENT:
        return HttpError(404, "not_found", "no such directory")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return HttpError(403, "forbidden", "permission denied")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return HttpError(507, "insufficient_storage", "no space left for the directory")
    return HttpError(500, "internal_error", f"cannot open directory ({exc.strerror})")
