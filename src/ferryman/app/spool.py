"""Temporary files whose lifetime belongs to a transfer (DESIGN lesson 1).

A spool file is created in STATE_DIR/spool, filled by its creator, and then
handed to a response Body as regions of its descriptor together with
`body_cleanup(fd, name)`. From then on the connection owns it: the file is
unlinked and its descriptor closed when the connection runs the body's
cleanup, which it does exactly once when the transfer ends (completed,
aborted, or cut by the peer), never when the handler returns. Before a Body
exists, whoever holds the file releases it with `discard`.

Ownership, in one place:

- creator (a handler or its worker thread): from `create` until it builds
  the Body, or until it calls `discard` on failure;
- the connection: from the Body onward, through `Body.cleanup`;
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
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ferryman.config import Config

log = logging.getLogger("ferryman.spool")

PREFIX = "ferryman-spool-"
_CREATE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
_DIR_MODE = 0o700
_FILE_MODE = 0o600


class Spool:
    """The spool directory of one server; see the module docstring for ownership."""

    @classmethod
    def of(cls, config: Config) -> Spool:
        """The server's spool, STATE/spool: what workers write and the arbiter sweeps."""
        return cls(str(config.state_path / "spool"))

    def __init__(self, directory: str) -> None:
        # The directory is made on first use, not here: a read-only deployment
        # that never extracts anything must still start.
        self.directory = directory
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
            self._unlink(name)
            try:
                asyncio.get_running_loop().run_in_executor(None, _close, fd, name)
            except RuntimeError:  # no running loop, or its executor is shut down
                _close(fd, name)

        return cleanup

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


def _close(fd: int, name: str) -> None:
    try:
        os.close(fd)
    except OSError as exc:
        log.debug("spool: cannot close descriptor %d of %s: %s", fd, name, exc)
