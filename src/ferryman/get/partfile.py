"""PATH.part itself: opened and locked once per run, and given its size at once."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from ferryman.errors import ConfigError
from ferryman.get.segment import LocalFailure


def open_locked(part: Path) -> int:
    """PATH.part opened for writing (made if missing) and locked against a second get."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(part, flags, 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot write {part}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.stat(part, follow_symlinks=False).st_ino != os.fstat(fd).st_ino:
            raise ConfigError(f"{part} was just saved by another ferryman get")
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(f"another ferryman get is writing {part}") from None
    except (OSError, ConfigError):
        os.close(fd)
        raise
    return fd


def prepare(fd: int, size: int | None) -> None:
    """The .part file emptied, then given its size at once (no surprise ENOSPC midway)."""
    try:
        os.ftruncate(fd, 0)
        if size:
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                os.ftruncate(fd, size)  # a filesystem without fallocate: a sparse file
    except OSError as exc:
        raise LocalFailure(f"cannot make room for {size} bytes: {exc.strerror}") from None
