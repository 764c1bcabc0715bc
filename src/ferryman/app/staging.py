"""Upload temporaries beside their targets, and the marks that find a dead worker's.

A PUT of a local file receives its body into a temporary in the target's own
directory (a dotfile, so never served or listed), which makes the commit a
rename inside one directory. A worker killed mid-upload would leave that file
behind, somewhere in the tree. So each temporary is first marked in
STATE/staging: a symlink named `<pid>-<random>` whose text is the
temporary's path under the root. The arbiter knows which worker died:
`sweep(pid)` right after it reaps one, and `sweep()` at boot (no worker runs
yet), remove the temporaries and their marks. The uploading worker removes
its own mark once the temporary is renamed into place or discarded.

The mark is made, and its directory synced, before the temporary exists, so
no temporary outlives a crash unmarked. A sweep opens each directory on the
way without following symlinks (app/writepath.py) and removes only names
that carry the temporary prefix and the mark's own pid and random part.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from typing import TYPE_CHECKING

from ferryman.app.writepath import open_parent
from ferryman.errors import HttpError

if TYPE_CHECKING:
    from ferryman.config import Config

log = logging.getLogger("ferryman.uploads")

TEMP_PREFIX = ".ferryman-upload-"


class Staging:
    """The marks of one server's upload temporaries, in `directory` (STATE/staging).

    `root` is the served directory the marks' paths are relative to.
    """

    def __init__(self, directory: str, root: str) -> None:
        self.directory = directory
        self.root = root
        self._made = False

    def new_name(self) -> str:
        """A temporary's name, unique and naming this process."""
        return f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(8)}"

    def mark(self, relative: str) -> None:
        """Mark the temporary at `relative` (its name from new_name) before creating it.

        Blocking (a directory sync): run it in a worker thread.
        """
        if not self._made:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            self._made = True
        mark = _mark_of(relative)
        os.symlink(relative, os.path.join(self.directory, mark))
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def unmark(self, relative: str) -> None:
        """The temporary at `relative` is gone (renamed or removed): forget its mark."""
        try:
            os.unlink(os.path.join(self.directory, _mark_of(relative)))
        except FileNotFoundError:
            pass

    def sweep(self, pid: int | None = None) -> int:
        """Remove the temporaries (and marks) of process `pid`, or of every process.

        Only for processes that are gone. Returns how many temporaries were removed.
        """
        try:
            marks = os.listdir(self.directory)
        except FileNotFoundError:
            return 0
        except OSError as exc:  # a sweep that cannot run must not stop the server
            log.warning("cannot sweep upload temporaries in %s: %s", self.directory, exc)
            return 0
        prefix = "" if pid is None else f"{pid}-"
        removed = 0
        for mark in marks:
            if not mark.startswith(prefix):
                continue
            path = os.path.join(self.directory, mark)
            try:
                relative = os.readlink(path)
                removed += self._remove_temporary(relative, mark)
                os.unlink(path)
            except OSError as exc:
                log.warning("cannot remove upload temporary %s: %s", mark, exc)
        if removed:
            log.info("removed %d upload temporar%s left by %s", removed,
                     "y" if removed == 1 else "ies",
                     "a stopped worker" if pid is None else f"worker pid {pid}")  # fmt: skip
        return removed

    def sweep_dead(self) -> int:
        """Remove the temporaries of every process that no longer runs (a command that
        writes, like a repair, was killed; a server's arbiter sweeps its own workers)."""
        try:
            marks = os.listdir(self.directory)
        except OSError:
            return 0
        pids = {int(m.partition("-")[0]) for m in marks if m.partition("-")[0].isdigit()}
        return sum(self.sweep(pid) for pid in pids if not _alive(pid))

    def _remove_temporary(self, relative: str, mark: str) -> int:
        segments = relative.split("/")
        name = segments[-1]
        if name != TEMP_PREFIX + mark or any(s in ("", ".", "..") for s in segments):
            log.warning("staging mark %s names %r, not its temporary: left alone", mark, relative)
            return 0
        root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            parent = open_parent(root_fd, tuple(segments[:-1]), create=False)
        except HttpError:  # the directory is gone (or is no longer a plain one)
            return 0
        finally:
            os.close(root_fd)
        try:
            os.unlink(name, dir_fd=parent)
        except FileNotFoundError:
            return 0
        finally:
            os.close(parent)
        return 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def store_id(location: str) -> str:
    """The canonical name of a store: a directory's real path, or the URL without a
    trailing slash (the catalog names copies' stores so)."""
    if location.startswith("s3://"):
        return location.rstrip("/")
    return os.path.realpath(location)


def stagings(config: Config) -> list[Staging]:
    """The staging marks of every local directory this server writes to."""
    if not config.allow_write:
        return []
    found = []
    if not config.is_remote:
        found.append(source_staging(config))
    found += [replica_staging(config, r) for r in config.replica if not r.startswith("s3://")]
    return found


def source_staging(config: Config) -> Staging:
    return Staging(str(config.state_path / "staging"), str(config.root))


def replica_staging(config: Config, location: str) -> Staging:
    tag = hashlib.sha256(store_id(location).encode()).hexdigest()[:8]
    return Staging(str(config.state_path / f"staging-{tag}"), store_id(location))


def _mark_of(relative: str) -> str:
    name = relative.rpartition("/")[2]
    if not name.startswith(TEMP_PREFIX):
        raise ValueError(f"{relative!r} is not an upload temporary")
    return name[len(TEMP_PREFIX) :]
