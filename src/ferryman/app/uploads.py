"""PUT and DELETE on local files: nothing becomes visible until it is verified.

A PUT streams its body into a temporary file beside the target (a dotfile,
so never served), hashing as it goes. Before anything is visible: the byte
count, Content-MD5 and Content-Digest/Repr-Digest are checked; the file is
fsynced and read back (`--verify-writes full`: size and SHA-256 from disk;
`size`: size only). Then it replaces the target atomically (rename; link for
create-only `If-None-Match: *`, so two racing creators cannot both win), the
directory is fsynced, and the catalog records it. Any failure on the way
(mismatch, disconnect, full disk) removes the temporary file and leaves the
target and the catalog as they were. Concurrent PUTs of one path each land
whole; the last rename wins.

Disk and catalog work runs in worker threads, in 1 MiB batches for the body.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import secrets
import threading
import time
from typing import TYPE_CHECKING

from ferryman.app.files import file_etag
from ferryman.app.intake import (
    BATCH,
    BodyChecks,
    check_write_preconditions,
    listed_live,
    receive_body,
    record_delete,
    record_write,
    require_length,
    storage_error,
    write_path,
)
from ferryman.app.writepath import existing, open_parent
from ferryman.catalog.db import Catalog
from ferryman.errors import HttpError
from ferryman.http.body import BodyReader
from ferryman.http.conditional import Validators
from ferryman.http.digest import format_repr_digest
from ferryman.http.parser import Request
from ferryman.http.response import Response
from ferryman.keylocks import KeyLocks

if TYPE_CHECKING:
    from ferryman.app.files import FileServer

log = logging.getLogger("ferryman.uploads")
TEMP_PREFIX = ".ferryman-upload-"


class Uploads:
    def __init__(self, files: FileServer, verify: str, catalog: Catalog | None = None) -> None:
        self.files = files
        self.verify_mode = verify
        self.catalog = catalog
        self._locks = KeyLocks()

    # -- PUT ------------------------------------------------------------------

    async def put(self, request: Request, body: BodyReader | None) -> Response:
        path = write_path(request)
        require_length(request)
        checks = BodyChecks.from_request(request)
        name = path.segments[-1]
        parent = await asyncio.to_thread(
            open_parent, self.files.root_fd, path.segments[:-1], create=True
        )
        try:
            before = await asyncio.to_thread(existing, parent, name)
            create_only = check_write_preconditions(request, _validators(before))
            temp = TEMP_PREFIX + secrets.token_hex(8)
            temp_fd = await asyncio.to_thread(_create_temp, parent, temp)
            try:
                size = await receive_body(body, temp_fd, checks)
                checks.verify()
                await asyncio.to_thread(_settle, temp_fd, size, checks.sha256, self.verify_mode)
                async with self._locks.hold(path.relative):
                    if not create_only:  # the version the client saw may have changed meanwhile
                        check_write_preconditions(
                            request, _validators(await asyncio.to_thread(existing, parent, name))
                        )
                    await asyncio.to_thread(_commit, parent, temp, name, create_only)
                    st = os.fstat(temp_fd)
                    etag = file_etag(st)
                    # Recorded under the same lock as the rename: the catalog's last
                    # word on a path is the version that is on disk.
                    await record_write(
                        self.catalog, path.relative, size=st.st_size, sha256=checks.sha256,
                        mtime_ns=st.st_mtime_ns, etag=etag,
                    )  # fmt: skip
            except BaseException:
                await asyncio.to_thread(_discard, parent, temp)
                raise
            finally:
                os.close(temp_fd)
        except ConnectionError:
            raise  # the client left mid-body: nothing stored, nobody to answer
        except OSError as exc:
            raise _write_error(exc) from None
        finally:
            os.close(parent)
        headers = [("ETag", etag), ("Repr-Digest", format_repr_digest(checks.sha256))]
        if before is None:
            headers.append(("Location", path.url()))
            return Response(201, headers)
        return Response(204, headers)

    # -- DELETE ---------------------------------------------------------------

    async def delete(self, request: Request) -> Response:
        path = write_path(request)
        name = path.segments[-1]
        parent = await asyncio.to_thread(
            open_parent, self.files.root_fd, path.segments[:-1], create=False
        )
        try:
            async with self._locks.hold(path.relative):
                before = await asyncio.to_thread(existing, parent, name)
                if before is None and not await listed_live(self.catalog, path.relative):
                    raise HttpError(404, "not_found", "no such file")
                check_write_preconditions(request, _validators(before))
                if before is not None:  # else gone already: only the record is missing
                    await asyncio.to_thread(_unlink, parent, name)
        except OSError as exc:
            raise _write_error(exc) from None
        finally:
            os.close(parent)
        await record_delete(self.catalog, path.relative)
        return Response(204)


def _validators(current: os.stat_result | None) -> Validators | None:
    if current is None:
        return None
    return Validators(etag=file_etag(current), last_modified=int(current.st_mtime))


# -- blocking steps (worker threads) -------------------------------------------------


def _create_temp(parent_fd: int, name: str) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    return os.open(name, flags, 0o644, dir_fd=parent_fd)


def _settle(fd: int, size: int, sha256: bytes, mode: str) -> None:
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


def _unlink(parent_fd: int, name: str) -> None:
    os.unlink(name, dir_fd=parent_fd)
    os.fsync(parent_fd)


def _discard(parent_fd: int, temp: str) -> None:
    try:
        os.unlink(temp, dir_fd=parent_fd)
    except FileNotFoundError:
        pass


def start_orphan_sweep(root: str, *, older_than: float) -> threading.Thread:
    """Remove upload temporaries a crash left behind, in the background.

    They are dotfiles (never served) in the directories that were written.
    Only files idle for `older_than` seconds go: a live upload (perhaps another
    worker's) writes at least every --body-timeout.
    """

    def sweep() -> None:
        cutoff = time.time() - older_than
        for directory, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in names:
                if name.startswith(TEMP_PREFIX):
                    path = os.path.join(directory, name)
                    try:
                        if os.lstat(path).st_mtime < cutoff:
                            os.unlink(path)
                            log.info("removed %s, left by an interrupted upload", path)
                    except OSError:
                        continue

    thread = threading.Thread(target=sweep, name="ferryman-orphan-sweep", daemon=True)
    thread.start()
    return thread


def _write_error(exc: OSError) -> HttpError:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return HttpError(403, "forbidden", "the file cannot be written")
    return storage_error(exc, "write the file")
