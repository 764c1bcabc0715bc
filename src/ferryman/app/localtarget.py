"""Writes to files under the served directory: a temporary beside the file, then a rename.

The body goes into a temporary in the file's own directory (app/staging.py
marks it so a dead worker's can be found), which is fsynced and read back
before anything is visible (`--verify-writes full`: size and SHA-256 from
disk; `size`: the size only). The commit renames it over the file (a link,
for a create-only `If-None-Match: *`, so the file cannot be replaced if
something appeared after all), then syncs the directory. Directories are
opened step by step under the root without following symlinks
(app/writepath.py), so a write never lands outside it.

Blocking calls run in worker threads; the body arrives in 1 MiB batches.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from ferryman.app.files import file_etag
from ferryman.app.intake import BATCH, storage_error
from ferryman.app.paths import RequestPath
from ferryman.app.staging import Staging
from ferryman.app.writepath import existing, open_parent
from ferryman.app.writetarget import Staged, Version
from ferryman.catalog.db import Intent
from ferryman.errors import HttpError

P = ParamSpec("P")
T = TypeVar("T")
_TEMP_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW


def version_of(st: os.stat_result) -> Version:
    return Version(
        size=st.st_size,
        etag=file_etag(st),
        mtime_ns=st.st_mtime_ns,
        ident=f"{st.st_dev}:{st.st_ino}",
        ino=st.st_ino,
        ctime_ns=st.st_ctime_ns,
    )


class LocalTarget:
    """Files under the directory open as `root_fd` (closed by aclose() if `owned`)."""

    def __init__(
        self, root_fd: int, verify_mode: str, staging: Staging, *, owned: bool = False
    ) -> None:
        self.root_fd = root_fd
        self.verify_mode = verify_mode
        self.staging = staging
        self._owned = owned

    async def aclose(self) -> None:
        if self._owned and self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    async def replicate(self, path: RequestPath, fd: int, size: int, sha256: bytes) -> Version:
        slot = await self.open(path, create=True)
        try:
            staged = await slot.stage()
            try:
                await _blocking(_copy, fd, staged.fd, size)
                await slot.seal(staged, size, sha256)
                return await slot.commit(
                    staged, size=size, sha256=sha256, create_only=False, content_type=None
                )
            finally:
                await slot.discard(staged)
        finally:
            slot.close()

    async def remove_copy(self, path: RequestPath) -> bool:
        slot = await self.open(path, create=False)
        try:
            current = await slot.current()
            if current is None:
                return False
            await slot.remove(current)
            return True
        finally:
            slot.close()

    async def open(self, path: RequestPath, *, create: bool) -> LocalSlot:
        parent = await _blocking(open_parent, self.root_fd, path.segments[:-1], create=create)
        return LocalSlot(self, parent, path)

    def changed(self, key: str) -> None:
        """Nothing to tell: readers revalidate local files with a stat() on every use."""

    async def put_happened(self, intent: Intent) -> Version | None:
        return await asyncio.to_thread(self._put_happened, intent)

    async def delete_happened(self, intent: Intent) -> bool:
        return await asyncio.to_thread(self._delete_happened, intent)

    def _put_happened(self, intent: Intent) -> Version | None:
        segments = intent.path.split("/")
        try:
            parent = open_parent(self.root_fd, tuple(segments[:-1]), create=False)
        except HttpError:
            return None  # the directory is gone: so is whatever the put made
        try:
            if intent.staged:  # left only if the commit did not finish: it is not the file
                try:
                    os.unlink(intent.staged, dir_fd=parent)
                except FileNotFoundError:
                    pass
            found = _lstat(parent, segments[-1])
        finally:
            os.close(parent)
        if found is None or f"{found.st_dev}:{found.st_ino}" != intent.ident:
            return None
        if found.st_size != intent.size:
            return None  # changed again since, outside ferryman: not the bytes it verified
        return version_of(found)

    def _delete_happened(self, intent: Intent) -> bool:
        segments = intent.path.split("/")
        try:
            parent = open_parent(self.root_fd, tuple(segments[:-1]), create=False)
        except HttpError:
            return True
        try:
            found = _lstat(parent, segments[-1])
        finally:
            os.close(parent)
        return found is None or f"{found.st_dev}:{found.st_ino}" != intent.ident


class LocalSlot:
    """One file's directory, open for one write (the slot owns the descriptor)."""

    def __init__(self, target: LocalTarget, parent: int, path: RequestPath) -> None:
        self.target = target
        self.parent = parent
        self.key = path.relative
        self.name = path.segments[-1]
        self._dir = "/".join(path.segments[:-1])

    def close(self) -> None:
        os.close(self.parent)

    async def current(self) -> Version | None:
        found = await _blocking(existing, self.parent, self.name)
        return None if found is None else version_of(found)

    async def stage(self) -> Staged:
        name = self.target.staging.new_name()
        relative = f"{self._dir}/{name}" if self._dir else name
        try:
            await asyncio.to_thread(self.target.staging.mark, relative)
        except OSError as exc:  # the state directory's disk, not the file's
            raise storage_error(exc, "mark the upload's temporary file") from None
        try:
            fd = await _blocking(os.open, name, _TEMP_FLAGS, 0o644, dir_fd=self.parent)
        except BaseException:
            self.target.staging.unmark(relative)
            raise
        st = os.fstat(fd)
        return Staged(fd, name, f"{st.st_dev}:{st.st_ino}")

    async def seal(self, staged: Staged, size: int, sha256: bytes) -> None:
        await _blocking(_seal, staged.fd, size, sha256, self.target.verify_mode)

    async def commit(
        self, staged: Staged, *, size: int, sha256: bytes, create_only: bool,
        content_type: str | None,
    ) -> Version:  # fmt: skip
        await _blocking(_commit, self.parent, staged.name, self.name, create_only)
        self.target.staging.unmark(self._relative(staged))
        return version_of(os.fstat(staged.fd))  # after the rename: its ctime is the file's

    async def remove(self, current: Version) -> None:
        await _blocking(_unlink, self.parent, self.name)

    async def discard(self, staged: Staged) -> None:
        try:
            await asyncio.to_thread(_discard, self.parent, staged.name)
            self.target.staging.unmark(self._relative(staged))
        finally:
            os.close(staged.fd)

    def _relative(self, staged: Staged) -> str:
        return f"{self._dir}/{staged.name}" if self._dir else staged.name


# -- blocking steps (worker threads) ------------------------------------------------------


async def _blocking(step: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking step in a thread; its OSError becomes the answer for a write."""
    try:
        return await asyncio.to_thread(step, *args, **kwargs)
    except OSError as exc:
        raise write_error(exc) from None


def _seal(fd: int, size: int, sha256: bytes, mode: str) -> None:
    """fsync, then read back what the disk holds and compare."""
    os.fsync(fd)
    if os.fstat(fd).st_size != size:
        raise HttpError(500, "verify_failed", "the stored size differs from the bytes received")
    if mode != "full":
        return
    hasher = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, BATCH, offset):
        hasher.update(chunk)
        offset += len(chunk)
    if offset != size or hasher.digest() != sha256:
        raise HttpError(500, "verify_failed", "the stored bytes differ from the bytes received")


def _commit(parent_fd: int, temp: str, name: str, create_only: bool) -> None:
    if create_only:
        try:
            os.link(temp, name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd, follow_symlinks=False)
        except FileExistsError:
            raise HttpError(
                412, "precondition_failed", "the file exists (If-None-Match: *)"
            ) from None
        os.unlink(temp, dir_fd=parent_fd)
    else:
        os.rename(temp, name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
    os.fsync(parent_fd)


def _copy(source: int, target: int, size: int) -> None:
    """The first `size` bytes of `source` into `target` (in the kernel where it can)."""
    offset = 0
    while offset < size:
        try:
            sent = os.copy_file_range(source, target, size - offset, offset, offset)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            sent = os.pwrite(target, os.pread(source, min(BATCH, size - offset), offset), offset)
        if sent == 0:
            raise OSError(errno.EIO, "the file to copy ended early")
        offset += sent


def _unlink(parent_fd: int, name: str) -> None:
    os.unlink(name, dir_fd=parent_fd)
    os.fsync(parent_fd)


def _discard(parent_fd: int, temp: str) -> None:
    try:
        os.unlink(temp, dir_fd=parent_fd)
    except FileNotFoundError:
        pass


def _lstat(parent_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def write_error(exc: OSError) -> HttpError:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return HttpError(403, "forbidden", "the file cannot be written")
    return storage_error(exc, "write the file")
