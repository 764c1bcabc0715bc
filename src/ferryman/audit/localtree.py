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
from collections.abc import Callable, Generator, Iterator

from ferryman import native
from ferryman.audit.model import Stored
from ferryman.audit.stores import CHUNK, StoreUnavailable, Unreadable


def local_ident(st: os.stat_result) -> str:
    return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}"


class LocalTree:
    """A directory, audited as a store."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.id = os.path.realpath(name)

    def listing(self, after: str | None = None) -> Generator[Stored, None, None]:
        """Every copy, in key order; walked whole whatever `after` says (cheap next to
        a bucket's pages, and the run skips what it checked)."""
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

# (sort name, size, ident): a directory as ("name/", None, None)
Entry = tuple[str, int | None, str | None]


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
    stack: list[tuple[str, int, list[Entry]]] = []
    try:
        stack.append(("", os.open(root, _DIRECTORY), []))
        stack[-1] = ("", stack[-1][1], scan(stack[-1][1]))
        while stack:
            prefix, fd, entries = stack[-1]
            while entries:  # the files of this directory, up to its next subdirectory
                sort_name, size, ident = entries.pop()
                if ident is None:
                    try:
                        sub_fd = os.open(sort_name[:-1], _DIRECTORY, dir_fd=fd)
                    except FileNotFoundError:
                        continue
                    stack.append((prefix + sort_name, sub_fd, []))
                    stack[-1] = (prefix + sort_name, sub_fd, scan(sub_fd))
                    break
                assert size is not None
                yield Stored(prefix + sort_name, size, None, None, ident)
            else:
                stack.pop()
                os.close(fd)
    finally:
        for _prefix, open_fd, _entries_left in stack:
            os.close(open_fd)


def _scan_python(directory_fd: int) -> list[Entry]:
    """The directory's visible files and directories, sorted descending (popped from
    the end); the same answer as the compiled scan (_dirscan.c), which is used when
    it is built."""
    found: list[Entry] = []
    with os.scandir(directory_fd) as entries:
        for entry in entries:
            name = entry.name
            if name[0] == ".":
                continue  # dot-names: never served, never written (state, temporaries)
            if entry.is_dir(follow_symlinks=False):
                found.append((name + "/", None, None))
            elif entry.is_file(follow_symlinks=False):
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                found.append((name, st.st_size, local_ident(st)))
    found.sort(reverse=True)  # names are unique: the tuples order by them
    return found


def _compiled_scan() -> Callable[[int], list[Entry]] | None:
    if native.STATUS != "compiled":  # FERRYMAN_PURE, or a build older than its sources
        return None
    try:
        from ferryman.audit._dirscan import scan as compiled
    except ImportError:
        return None
    return compiled


scan: Callable[[int], list[Entry]] = _compiled_scan() or _scan_python


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
