"""What the write flow (app/writes.py) needs from the place it writes to.

A target is a local directory (app/localtarget.py) or an object store
(app/storetarget.py). The flow opens a `Slot` for the key of one request,
and calls its steps in this order, the last four under the key's lock:

    stage    a new temporary that receives the body (local: beside the file;
             store: a spool file)
    seal     make the received bytes durable and check them (local: fsync and
             read back); before the lock, so a slow disk holds up no one else
    current  the version there now (None: nothing), for preconditions
    commit   make the staged bytes the key's version and verify it
             (local: rename; store: upload, HEAD, read back, retry)
    remove   delete the version there now
    discard  drop a temporary that was not committed

Each step raises only HttpError: a target translates its own failures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ferryman.app.paths import RequestPath
from ferryman.catalog.db import Intent
from ferryman.http.conditional import Validators


@dataclass(frozen=True, slots=True)
class Version:
    """One version of a key, as its target shows it."""

    size: int
    etag: str
    mtime_ns: int
    # Names this version in an intent: a local file's "device:inode", a store's ETag.
    ident: str
    ino: int | None = None  # local files: kept in the catalog for the digest index
    ctime_ns: int | None = None

    @property
    def validators(self) -> Validators:
        return Validators(etag=self.etag, last_modified=self.mtime_ns // 1_000_000_000)


@dataclass(slots=True)
class Staged:
    """A temporary holding a request body: its descriptor, and its name for the target."""

    fd: int
    name: str
    ident: str = ""  # local: the temporary's "device:inode", which the rename keeps


class Slot(Protocol):
    """One key of a target, opened for one write."""

    key: str

    async def current(self) -> Version | None: ...
    async def stage(self) -> Staged: ...
    async def seal(self, staged: Staged, size: int, sha256: bytes) -> None: ...
    async def commit(
        self, staged: Staged, *, size: int, sha256: bytes, create_only: bool,
        content_type: str | None,
    ) -> Version: ...  # fmt: skip
    async def remove(self, current: Version) -> None: ...
    async def discard(self, staged: Staged) -> None: ...
    def close(self) -> None: ...


def copy_ident(version: Version) -> str:
    """The store's identifier of a version as the catalog's copies keep it: an ETag, or
    a local file's "inode:mtime_ns:ctime_ns" (what a listing of the store shows)."""
    if version.ino is None:
        return version.etag
    return f"{version.ino}:{version.mtime_ns}:{version.ctime_ns}"


class Target(Protocol):
    async def open(self, path: RequestPath, *, create: bool) -> Slot:
        """The slot for `path`'s key; `create` makes missing directories (local PUT)."""
        ...

    def changed(self, key: str) -> None:
        """Told after a write or delete was tried on `key`, however it ended."""
        ...

    async def put_happened(self, intent: Intent) -> Version | None:
        """For a left-over put intent: the version it made, if it is in place; else None.

        Also removes what the interrupted put left (its temporary).
        """
        ...

    async def delete_happened(self, intent: Intent) -> bool:
        """For a left-over delete intent: whether the version it removes is gone."""
        ...

    async def replicate(self, path: RequestPath, fd: int, size: int, sha256: bytes) -> Version:
        """Make the `size` bytes of `fd` (from offset 0) the key's version here, verified
        as any write; for a replica, or a repair. `fd` stays the caller's."""
        ...

    async def remove_copy(self, path: RequestPath) -> bool:
        """Delete the key's version here; False if there was none."""
        ...

    async def aclose(self) -> None:
        """Release what the target holds open (a replica's directory, a store's client)."""
        ...
