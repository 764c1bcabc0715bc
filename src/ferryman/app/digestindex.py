"""Repr-Digest for catalogued files, without a catalog query per request.

The catalog knows each stored file's SHA-256 with the identity the file had
when ferryman wrote it: size, mtime, ctime and inode. A GET may carry that
digest only while the file on disk still has all four; a file changed
behind ferryman's back is served without it, and the mismatch is logged
once per version. The ctime is what catches an edit of the same size whose
writer put the old mtime back (the kernel sets the ctime on every change
and nobody can set it back); the inode catches a file replaced by another.
Entries recorded before ferryman kept inode and ctime are matched on size
and mtime alone. An entry `catalog import` recorded from the inventory alone
(CLAIM_ETAG: its copy was missing or differed) is a claim about what should
be stored, computed from no file here: it is never served, whatever the
file's size and mtime.

An object of a bucket has no inode or ctime; its ETag names its version. A
stored object carries the digest ferryman wrote in its metadata; for one the
catalog learned of otherwise (`catalog scan` or `import` of a bucket, which
read every byte under If-Match on that ETag), `object_digest` gives the
catalog's digest while the object's ETag and size are the ones recorded.

Answers are memoised per path and file version, so the catalog is asked
once per version, not once per request. Another worker's (or server's)
upload changes the version, which misses the memo.

On SQLite the question is a local read in WAL mode, asked on the event
loop (a thread hop would cost more than the read). On PostgreSQL it is a
network round trip, up to the statement timeout, so the index is
`threaded`: the readers ask `known()` first and, on a miss, `await
learn()`, which asks the catalog in a thread and fills the memo; the
answer is then read from the memo, the same answer for the same version
as the direct question would give.
"""

from __future__ import annotations

import asyncio
import logging
import os

from ferryman.catalog.api import Catalog, CatalogError, CatalogUnavailable
from ferryman.catalog.db import CLAIM_ETAG, CatalogEntry
from ferryman.http.digest import format_repr_digest

log = logging.getLogger("ferryman.catalog")
_MAX_MEMO = 8192


class DigestIndex:
    """`threaded`: the catalog is across a network (PostgreSQL): look up off the loop."""

    def __init__(self, catalog: Catalog, *, threaded: bool = False) -> None:
        self.catalog = catalog
        self.threaded = threaded
        self._memo: dict[str, tuple[tuple[int, int, int, int], str | None]] = {}
        self._objects: dict[str, tuple[tuple[str, int], str | None]] = {}

    def known(self, relative: str, st: os.stat_result) -> bool:
        """Whether `repr_digest` answers this version without asking the catalog."""
        memo = self._memo.get(relative)
        return memo is not None and memo[0] == (
            st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)  # fmt: skip

    async def learn(self, relative: str, st: os.stat_result) -> None:
        """Ask the catalog about this version in a thread; `repr_digest` then answers it."""
        await asyncio.to_thread(self.repr_digest, relative, st)

    def object_known(self, key: str, etag: str, size: int) -> bool:
        memo = self._objects.get(key)
        return memo is not None and memo[0] == (etag, size)

    async def learn_object(self, key: str, etag: str, size: int) -> None:
        await asyncio.to_thread(self.object_digest, key, etag, size)

    def repr_digest(self, relative: str, st: os.stat_result) -> str | None:
        """The Repr-Digest value for this version of the file, or None."""
        version = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        memo = self._memo.get(relative)
        if memo is not None and memo[0] == version:
            return memo[1]
        try:
            value = self._lookup(relative, st)
        except CatalogUnavailable:  # down: said once, when it went (catalog/outage.py)
            return None
        except CatalogError as exc:  # busy or broken now: ask again next time
            log.warning("no Repr-Digest for %s: %s", relative, exc)
            return None
        if len(self._memo) >= _MAX_MEMO:
            self._memo.clear()  # rare and cheap to refill: one catalog read per path
        self._memo[relative] = (version, value)
        return value

    def object_digest(self, key: str, etag: str, size: int) -> str | None:
        """The Repr-Digest value for this version of a stored object, or None."""
        version = (etag, size)
        memo = self._objects.get(key)
        if memo is not None and memo[0] == version:
            return memo[1]
        try:
            entry = self.catalog.get(key)
        except CatalogUnavailable:
            return None
        except CatalogError as exc:  # busy or broken now: ask again next time
            log.warning("no Repr-Digest for %s: %s", key, exc)
            return None
        except ValueError:  # a key the catalog cannot hold: never catalogued
            entry = None
        value = None
        if entry is not None and not entry.deleted and entry.etag == etag != CLAIM_ETAG:
            value = format_repr_digest(bytes.fromhex(entry.sha256)) if entry.size == size else None
        if len(self._objects) >= _MAX_MEMO:
            self._objects.clear()
        self._objects[key] = (version, value)
        return value

    def _lookup(self, relative: str, st: os.stat_result) -> str | None:
        try:
            entry = self.catalog.get(relative)
        except ValueError:  # a name the catalog cannot hold (not UTF-8): never catalogued
            return None
        if entry is None or entry.deleted or entry.etag == CLAIM_ETAG:
            return None
        if not _same_version(entry, st):
            log.warning(
                "%s changed on disk outside ferryman (catalog: %d bytes, mtime %d, ctime %s, "
                "inode %s; disk: %d bytes, mtime %d, ctime %d, inode %d): served without "
                "Repr-Digest",
                relative, entry.size, entry.mtime_ns, entry.ctime_ns, entry.ino,
                st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
            )  # fmt: skip
            return None
        return format_repr_digest(bytes.fromhex(entry.sha256))


def _same_version(entry: CatalogEntry, st: os.stat_result) -> bool:
    if entry.size != st.st_size or entry.mtime_ns != st.st_mtime_ns:
        return False
    if entry.ino is None or entry.ctime_ns is None:
        return True  # recorded before ferryman kept them: size and mtime are all it has
    return entry.ino == st.st_ino and entry.ctime_ns == st.st_ctime_ns
