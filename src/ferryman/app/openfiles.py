"""Descriptors of recently served files, kept open and shared between requests.

Opening a file for a request costs an open(), an fstat(), a readlink() of
/proc/self/fd (the confinement check) and a close(). A file asked for again
is answered from the descriptor kept here if `still_reached()`: a stat()
of its path shows the same `identity()`, and each directory on the way (if
any: one stat() each) the same `route()`. Anything else (a replaced, changed
or removed file, a symlink pointed elsewhere, a file or a directory above it
renamed or linked elsewhere, which changes its ctime) drops the entry and
the request opens the path afresh, with every check. Bodies read through
their descriptor with explicit offsets (sendfile, preadv), so any number of
transfers can share one.

An entry in use is never closed under a transfer: each request holds a use,
and a dropped or evicted entry closes its descriptor when its last use ends.
Entries unused for `idle` seconds (--open-files-idle) are closed by
`sweep()`, so a deleted file's space is not held for long.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from ferryman.app.fileat import Identity, identity, identity_at

if TYPE_CHECKING:
    from ferryman.app.plan import Representation


Route = tuple[tuple[int, int, int], ...]


def route(root_fd: int, relative: str) -> Route:
    """The directories `relative` passes through under the root, as they are now.

    Device, inode and ctime of each: a directory above the file moved out of
    the root (or under a dot-name) and reached again through a symlink left
    in its place keeps the file's own identity, but not its ctime. Taken
    before the file is opened and checked, so a later swap shows. A file in
    the root itself costs nothing; one added to or removed from a directory
    on the way changes its ctime too, and the next request reopens the path.
    Raises OSError.
    """
    dirs: list[tuple[int, int, int]] = []
    end = relative.find("/")
    while end >= 0:
        found = identity_at(root_fd, relative[:end])
        if isinstance(found, int):
            raise OSError(found, os.strerror(found), relative[:end])
        dirs.append((found[0], found[1], found[4]))
        end = relative.find("/", end + 1)
    return tuple(dirs)


def still_reached(root_fd: int, relative: str, known: Identity, way: Route) -> bool:
    """`relative` still leads, by the same directories, to the file that was checked."""
    if identity_at(root_fd, relative) != known:
        return False  # changed, or gone (an errno)
    if not way:
        return True  # a file in the root: no directory on the way
    try:
        return route(root_fd, relative) == way
    except OSError:
        return False


class OpenFile:
    """An open, checked file and its uses; `release()` ends one.

    Made with one use. One that is not kept closes its descriptor when that
    use ends; a kept one (OpenFiles.keep) stays open while it is in the table.
    `representation` is what the server made of this version of the file for
    its answers (app/plan.py), made at its first answer and kept with it;
    `sidecar_representation` the same for its answers as the precompressed
    coding of the file beside it (`X.gz` answering `X`: X's type, a coding).
    """

    __slots__ = (
        "fd",
        "identity",
        "kept",
        "representation",
        "route",
        "sidecar_representation",
        "st",
        "used_at",
        "users",
    )

    def __init__(self, fd: int, st: os.stat_result, way: Route, *, kept: bool = False) -> None:
        self.fd = fd
        self.identity = identity(st)
        self.route = way  # route() taken before the open
        self.st = st
        self.users = 1
        self.kept = kept  # in the table of OpenFiles
        self.used_at = time.monotonic()
        self.representation: Representation | None = None
        self.sidecar_representation: Representation | None = None

    def release(self) -> None:
        self.users -= 1
        if self.users == 0 and not self.kept:
            os.close(self.fd)


class OpenFiles:
    def __init__(self, root_fd: int, capacity: int, idle: float) -> None:
        self.root_fd = root_fd
        self.capacity = capacity
        self.idle = idle  # seconds an unused descriptor stays open
        self._entries: OrderedDict[str, OpenFile] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self._entries)

    def use(self, relative: str) -> OpenFile | None:
        """The kept descriptor of `relative` if it is still that file, with a use taken."""
        entry = self._entries.get(relative)
        if entry is None:
            return None
        if not still_reached(self.root_fd, relative, entry.identity, entry.route):
            self._drop(relative)
            return None
        entry.users += 1
        entry.used_at = time.monotonic()
        self._entries.move_to_end(relative)
        return entry

    def keep(self, relative: str, fd: int, st: os.stat_result, way: Route) -> OpenFile:
        """Keep a descriptor just opened and checked (`way`: its route() from before
        the open); returns it with the caller's use."""
        if relative in self._entries:
            self._drop(relative)
        entry = OpenFile(fd, st, way, kept=True)
        self._entries[relative] = entry
        while len(self._entries) > self.capacity:
            self._drop(next(iter(self._entries)))
        return entry

    def sweep(self, now: float | None = None) -> None:
        """Close the descriptors nobody used for `idle` seconds."""
        limit = (time.monotonic() if now is None else now) - self.idle
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
