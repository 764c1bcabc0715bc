"""Descriptors of recently served files, kept open and shared between requests.

Opening a file for a request costs an open(), an fstat(), a readlink() of
/proc/self/fd (the confinement check) and a close(). A file asked for again
is answered from the descriptor kept here after one stat() of its path,
which must show the same `identity()`. Anything else (a replaced, changed or
removed file, a symlink pointed elsewhere, a file renamed or linked
elsewhere, which changes its ctime) drops the entry and the request opens
the path afresh, with every check. Bodies read through their descriptor with explicit
offsets (sendfile, preadv), so any number of transfers can share one.

An entry in use is never closed under a transfer: each request holds a use,
and a dropped or evicted entry closes its descriptor when its last use ends.
Entries unused for INACTIVE seconds are closed by `sweep()`, so a deleted
file's space is not held for long.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ferryman.app.plan import Representation

INACTIVE = 10.0  # seconds an unused descriptor stays open


Identity = tuple[int, int, int, int, int]


def identity(st: os.stat_result) -> Identity:
    """What must not change for a path to still reach the file that was checked.

    The ctime is in it because a rename changes it: a file moved out of the
    root and reached again through a symlink at its old path is a new file to
    check, not the one that was.
    """
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class OpenFile:
    """An open, checked file and its uses; `release()` ends one.

    Made with one use. One that is not kept closes its descriptor when that
    use ends; a kept one (OpenFiles.keep) stays open while it is in the table.
    `representation` is what the server made of this version of the file for
    its answers (app/plan.py), made at its first answer and kept with it.
    """

    __slots__ = ("fd", "identity", "kept", "representation", "st", "used_at", "users")

    def __init__(self, fd: int, st: os.stat_result, *, kept: bool = False) -> None:
        self.fd = fd
        self.identity = identity(st)
        self.st = st
        self.users = 1
        self.kept = kept  # in the table of OpenFiles
        self.used_at = time.monotonic()
        self.representation: Representation | None = None

    def release(self) -> None:
        self.users -= 1
        if self.users == 0 and not self.kept:
            os.close(self.fd)


class OpenFiles:
    def __init__(self, root_fd: int, capacity: int) -> None:
        self.root_fd = root_fd
        self.capacity = capacity
        self._entries: OrderedDict[str, OpenFile] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self._entries)

    def use(self, relative: str) -> OpenFile | None:
        """The kept descriptor of `relative` if it is still that file, with a use taken."""
        entry = self._entries.get(relative)
        if entry is None:
            return None
        try:
            same = identity(os.stat(relative, dir_fd=self.root_fd)) == entry.identity
        except OSError:
            same = False
        if not same:
            self._drop(relative)
            return None
        entry.users += 1
        entry.used_at = time.monotonic()
        self._entries.move_to_end(relative)
        return entry

    def keep(self, relative: str, fd: int, st: os.stat_result) -> OpenFile:
        """Keep a descriptor just opened and checked; returns it with the caller's use."""
        if relative in self._entries:
            self._drop(relative)
        entry = OpenFile(fd, st, kept=True)
        self._entries[relative] = entry
        while len(self._entries) > self.capacity:
            self._drop(next(iter(self._entries)))
        return entry

    def sweep(self, now: float | None = None) -> None:
        """Close the descriptors nobody used for INACTIVE seconds."""
        limit = (time.monotonic() if now is None else now) - INACTIVE
        for relative, entry in list(self._entries.items()):
            if entry.used_at > limit:
                break  # the rest were used more recently
            self._drop(relative)

    def close(self) -> None:
        for relative in list(self._entries):
            self._drop(relative)

    def _drop(self, relative: str) -> None:
        entry = self._entries.pop(relative)
        entry.kept = False
        if entry.users == 0:
            os.close(entry.fd)
