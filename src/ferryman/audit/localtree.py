"""A local directory, audited as a store: walked in key order, read without following links.

The walk never follows a symlink (a symlink is neither listed nor entered: a
copy is a regular file under the root) and skips dot-names (never served,
never written by ferryman: the state directory, upload temporaries). A
copy's identifier is "inode:mtime_ns:ctime_ns": a copy rewritten in place,
renamed over or touched gets another, so a digest learned from reading it
is trusted only while the identifier holds.

The walk runs once per file of every audit, so it is kept to plain loops
over `os.scandir` (most of its time is the stat of each file).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Generator, Iterator
from operator import itemgetter

from ferryman.audit.model import Stored
from ferryman.audit.stores import CHUNK, StoreUnavailable, Unreadable


def local_ident(st: os.stat_result) -> str:
    return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}"


class LocalTree:
    """A directory, audited as a store."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.id = os.path.realpath(name)

    def listing(self) -> Generator[Stored, None, None]:
        try:
            yield from _walk(self.id)
        except OSError as exc:
            raise StoreUnavailable(f"{self.name}: cannot list it ({exc.strerror})") from None

    def read(self, key: str) -> Iterator[bytes]:
        try:
            fd = _open_below(self.id, key)
        except OSError as exc:
            raise Unreadable(f"cannot open it ({exc.strerror})") from None
        try:
            offset = 0
            while True:
                try:
                    chunk = os.pread(fd, CHUNK, offset)
                except OSError as exc:
                    raise Unreadable(f"read failed at byte {offset} ({exc.strerror})") from None
                if not chunk:
                    return
                offset += len(chunk)
                yield chunk
        finally:
            os.close(fd)

    def close(self) -> None:
        """Nothing is kept open between calls."""


_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _walk(root: str) -> Iterator[Stored]:
    """Every regular file under `root`, in code-point order of its key.

    A directory's entries are visited as `name/` and files as `name`, which
    puts every key in global code-point order: all keys under `a` start with
    `a/`, and "/" sorts after "-" and before "0". Each directory is read
    through a descriptor (opened without following a link, and each file
    stat'ed relative to it: no path is resolved twice, and none can be
    swapped for a link under the walk). A file or directory removed while
    the walk passes is not listed (it is gone); any other error stops it.
    """
    # (key prefix, directory descriptor, entries left); a descriptor is on the stack
    # before its entries are read, so that it is closed whatever happens
    stack: list[tuple[str, int, list[tuple[str, os.DirEntry[str]]]]] = []
    try:
        stack.append(("", os.open(root, _DIRECTORY), []))
        stack[-1] = ("", stack[-1][1], _entries(stack[-1][1]))
        while stack:
            prefix, fd, entries = stack[-1]
            while entries:  # the files of this directory, up to its next subdirectory
                sort_name, entry = entries.pop()
                if sort_name[-1] == "/":
                    try:
                        sub_fd = os.open(entry.name, _DIRECTORY, dir_fd=fd)
                    except FileNotFoundError:
                        continue
                    stack.append((prefix + sort_name, sub_fd, []))
                    stack[-1] = (prefix + sort_name, sub_fd, _entries(sub_fd))
                    break
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                yield Stored(prefix + sort_name, st.st_size, ident=local_ident(st))
            else:
                stack.pop()
                os.close(fd)
    finally:
        for _prefix, open_fd, _entries_left in stack:
            os.close(open_fd)


def _entries(directory_fd: int) -> list[tuple[str, os.DirEntry[str]]]:
    """The directory's visible entries, sorted descending (popped from the end)."""
    found = []
    with os.scandir(directory_fd) as scan:
        for entry in scan:
            name = entry.name
            if name[0] == ".":
                continue
            if entry.is_dir(follow_symlinks=False):
                found.append((name + "/", entry))
            elif entry.is_file(follow_symlinks=False):
                found.append((name, entry))
    found.sort(key=itemgetter(0), reverse=True)
    return found


def _open_below(root: str, key: str) -> int:
    """Open root/key read-only, every step without following a symlink."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        *directories, name = key.split("/")
        for directory in directories:
            next_fd = os.open(directory, flags | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        file_fd = os.open(name, flags | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(file_fd).st_mode):
        os.close(file_fd)
        raise OSError(0, "not a regular file")
    return file_fd
