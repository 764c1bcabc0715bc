"""Temporary files whose lifetime belongs to the transfer that sends them.

A spool file is created in STATE_DIR/spool, filled by its creator, and then
handed to a response Body as regions of its descriptor together with
`body_cleanup(fd, name)`. From then on the connection owns it: the file is
unlinked and its descriptor closed when the connection runs the body's
cleanup, which it does exactly once when the transfer ends (completed,
aborted, or cut by the peer), never when the handler returns. Before a Body
exists, whoever holds the file releases it with `discard`.

Ownership, in one place:

- creator (a handler or its worker thread): from `create` or `reserve`
  until it builds the Body, or until it calls `discard` on failure;
- the connection: from the Body onward, through `Body.cleanup`;
- a shared copy of an archive member (app/archive_copies.py) is the one
  exception: its registry owns the file, every Body using it holds a lease
  whose release is the Body's cleanup, and the registry removes the file
  (`remove`) after the last release (and `keep` seconds unused);
- the sweep: files a dead process left behind. `sweep()` at startup takes
  them all; `sweep(pid)` takes the files of one worker that died.

Every use of a spool file goes through its open descriptor; the name exists
only so that a crash leaves something a later sweep can find (and so an
operator can see what the spool holds). That is why a sweep that races a
live transfer is harmless: unlinking a name does not disturb an open
descriptor, and the owner's own unlink then finds nothing, which it ignores.

Names are `ferryman-spool-<pid>-<16 hex>`: the prefix marks what a sweep may
remove (nothing else in the directory is touched), the pid which process
made it. Blocking calls are fine here; callers on the event loop use threads
where the disk may be slow. The cleanup unlinks at once (a directory entry)
and moves the close, which frees the blocks, to a worker thread when an
event loop is running.

The spool has one size limit for the whole server (--spool-max-size), not a
share per worker: the directory is shared, so what counts is what is in it.
`reserve(size)` takes the directory's lock (flock on `reserve.lock`, opened
for each reservation, so it also keeps threads of one process in turn),
adds up the bytes of every spool file there (allocated or declared,
whichever is more: upload bodies and the files of other workers count
too), and only if `size` more fits creates the file and allocates its room
(posix_fallocate), then lets go. Two reservations cannot both see the same
free room, a full disk shows at once (ENOSPC before anything is written),
and a reserved file never grows past its size, so reservations never take
the sum past the limit. Files made with `create` (upload bodies, whose size
is not known ahead) are counted, not checked.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ferryman.config import Config

log = logging.getLogger("ferryman.spool")

PREFIX = "ferryman-spool-"
_CREATE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
LOCK_NAME = "reserve.lock"  # no PREFIX: never swept
_DIR_MODE = 0o700
_FILE_MODE = 0o600
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
MAX_SIZE = 8 * 1024**3  # --spool-max-size
KEEP = 10.0  # --spool-keep


class SpoolFull(Exception):
    """A reservation would take the spool past its limit; it may fit later."""

    def __init__(self, used: int, size: int, limit: int) -> None:
        super().__init__(f"the spool holds {used} bytes; {size} more would pass {limit}")
        self.used = used
        self.size = size
        self.limit = limit


class Spool:
    """The spool directory of one server; see the module docstring for ownership."""

    @classmethod
    def of(cls, config: Config) -> Spool:
        """The server's spool, STATE/spool: what workers write and the arbiter sweeps."""
        return cls(
            str(config.state_path / "spool"),
            max_size=config.spool_max_size,
            keep=config.spool_keep,
        )

    def __init__(self, directory: str, *, max_size: int = MAX_SIZE, keep: float = KEEP) -> None:
        # The directory is made on first use, not here: a read-only deployment
        # that never extracts anything must still start.
        self.directory = directory
        self.max_size = max_size  # bytes of spool files in the directory (reserve)
        self.keep = keep  # seconds an unused member copy stays for the next request
        self._made = False
        self._lock = threading.Lock()

    # -- creating ---------------------------------------------------------------

    def create(self) -> tuple[int, str]:
        """A new empty file (0600) opened read-write: (descriptor, name in the spool).

        Raises OSError (ENOSPC, EACCES, ...) for the caller to translate.
        """
        self._ensure_directory()
        for _ in range(8):  # a collision of 64 random bits is not expected even once
            name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(8)}"
            try:
                fd = os.open(self._path(name), _CREATE_FLAGS, _FILE_MODE)
            except FileExistsError:
                continue
            return fd, name
        raise FileExistsError(errno.EEXIST, "no free spool name", self.directory)

    def reserve(self, size: int) -> tuple[int, str]:
        """A new file with room for `size` bytes, if the spool stays within its limit.

        Raises SpoolFull when it would not (nothing is created), OSError
        (ENOSPC when the disk has not the room) after discarding the file.
        """
        self._ensure_directory()
        with self._directory_locked():
            used = self.usage()
            if used + size > self.max_size:
                raise SpoolFull(used, size, self.max_size)
            fd, name = self.create()
            try:
                _allocate(fd, size)
            except BaseException:
                self.discard(fd, name)
                raise
        return fd, name

    def usage(self) -> int:
        """Bytes of the spool files in the directory: allocated or declared, the larger."""
        total = 0
        try:
            scan = os.scandir(self.directory)
        except FileNotFoundError:
            return 0
        with scan:
            for entry in scan:
                if not entry.name.startswith(PREFIX):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # released while we looked
                    continue
                total += max(st.st_size, st.st_blocks * 512)
        return total

    @contextmanager
    def _directory_locked(self) -> Iterator[None]:
        """The lock between processes (one open per reservation: cheap beside an extraction)."""
        fd = os.open(self._path(LOCK_NAME), _LOCK_FLAGS, _FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # lets go of the lock

    def _ensure_directory(self) -> None:
        if self._made:
            return
        with self._lock:
            if not self._made:
                os.makedirs(self.directory, mode=_DIR_MODE, exist_ok=True)
                self._made = True

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    # -- releasing ----------------------------------------------------------------

    def body_cleanup(self, fd: int, name: str) -> Callable[[], None]:
        """The Body.cleanup for a spool file: unlink it and close `fd`, once.

        Idempotent and never raises (failures are logged at debug level). The
        name goes at once; on a running event loop the close, which frees the
        file's blocks and can take milliseconds for a large file, goes to a
        worker thread (the transfer is over, nothing waits for it).
        """
        done = False

        def cleanup() -> None:
            nonlocal done
            if done:
                return
            done = True
            self.remove(fd, name)

        return cleanup

    def remove(self, fd: int, name: str) -> None:
        """Unlink `name` now; close `fd` in a worker thread on a running loop, else now."""
        self._unlink(name)
        import asyncio  # here, not at the top: the arbiter imports this module (RSS)

        try:
            asyncio.get_running_loop().run_in_executor(None, _close, fd, name)
        except RuntimeError:  # no running loop, or its executor is shut down
            _close(fd, name)

    def discard(self, fd: int, name: str) -> None:
        """Unlink `name` and close `fd` now (for failures before a Body exists)."""
        self._unlink(name)
        _close(fd, name)

    def _unlink(self, name: str) -> None:
        try:
            os.unlink(self._path(name))
        except OSError as exc:  # already swept, or the directory is gone
            log.debug("spool: cannot unlink %s: %s", name, exc)

    # -- sweeping -------------------------------------------------------------------

    def sweep(self, pid: int | None = None) -> int:
        """Remove files left behind: all spool files, or only those of process `pid`.

        Call with no pid at startup, before any worker serves; with the pid of
        a worker that died, after it was reaped. Returns how many were removed.
        One directory scan; entries without the spool prefix are left alone.
        """
        prefix = PREFIX if pid is None else f"{PREFIX}{pid}-"
        removed = 0
        try:
            scan = os.scandir(self.directory)
        except FileNotFoundError:
            return 0
        except OSError as exc:  # a sweep that cannot run must not stop the server
            log.warning("spool: cannot sweep %s: %s", self.directory, exc)
            return 0
        with scan:
            for entry in scan:
                if not entry.name.startswith(prefix):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        continue
                    os.unlink(entry.path)
                except OSError as exc:
                    log.debug("spool: cannot sweep %s: %s", entry.name, exc)
                    continue
                removed += 1
        if removed:
            log.info("spool: removed %d file(s) left behind in %s", removed, self.directory)
        return removed


def _allocate(fd: int, size: int) -> None:
    """Give the file its room now, so a full disk fails before any byte is written.

    A filesystem that cannot allocate ahead gets the size declared instead
    (ftruncate): the sum in usage() still counts it.
    """
    if size <= 0:
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        os.ftruncate(fd, size)


def _close(fd: int, name: str) -> None:
    try:
        os.close(fd)
    except OSError as exc:
        log.debug("spool: cannot close descriptor %d of %s: %s", fd, name, exc)
