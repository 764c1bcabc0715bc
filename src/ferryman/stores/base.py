"""What ferryman needs from an object store, and what its failures mean over HTTP.

A store holds objects under keys relative to the served source (for
`s3://bucket/prefix`, a key `a/b.txt` is the object `prefix/a/b.txt`). The
local directory is not served through this protocol: it keeps its descriptor
path (app/root.py), which is what makes sendfile and /proc confinement
possible. Remote stores, and the cache in front of them, are.

Every store raises only the StoreError kinds below; `http_error` is the one
place where they become HTTP answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from ferryman.errors import FerrymanError, HttpError


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One version of an object, as a HEAD (or a listing) reports it."""

    key: str  # relative to the source, no leading slash
    size: int
    etag: str  # as the store sends it, quotes included: '"9b2cf535f27731c9"'
    last_modified: int  # Unix seconds
    sha256: str | None = None  # hex; from the object's metadata when ferryman wrote it
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One line of a directory listing: an object, or a common prefix ("directory")."""

    name: str  # the last segment, without a trailing slash
    is_dir: bool
    size: int = 0
    last_modified: int | None = None


class Store(Protocol):
    """An object store: read ranges, list one level, upload, delete."""

    description: str  # for logs: "s3://bucket/prefix at http://host:port"

    async def stat(self, key: str) -> ObjectInfo:
        """The current version of `key`; NotFound if there is none."""
        ...

    def read(
        self, key: str, start: int, end: int, *, if_match: str | None = None
    ) -> AsyncIterator[bytes]:
        """Bytes [start, end) of `key`, streamed as they arrive.

        With `if_match`, only from that version (PreconditionFailed otherwise).
        Yields exactly end - start bytes or raises: a short or cut response is
        Truncated, never a quiet end. Closing the iterator stops the transfer.
        """
        ...

    def list(self, prefix: str) -> AsyncIterator[ListEntry]:
        """The entries directly under `prefix` ("" or ending in "/"), every page, in order."""
        ...

    async def upload(
        self, key: str, fd: int, size: int, sha256: bytes, content_type: str | None = None
    ) -> None:
        """Store `size` bytes read from `fd` (from offset 0) as `key`.

        Sends the SHA-256 as the upload's checksum and records it in the
        object's metadata (ObjectInfo.sha256 reads it back). Multipart above
        the store's threshold. Returns when the store has answered; verifying
        what it kept is the caller's job (it does not trust this answer).
        """
        ...

    async def delete(self, key: str) -> None:
        """Remove `key`; nothing happens if it does not exist (as S3 answers). A caller
        that must tell the two apart asks `stat` first, as writes do under their lock."""
        ...

    async def prepare(self) -> None:
        """Set up what is slow to set up (an S3 client parses its models: ~0.1 s), so the
        first request does not pay for it. Connects to nothing; raises nothing expected."""
        ...

    async def close(self) -> None: ...


# -- failures ------------------------------------------------------------------


class StoreError(FerrymanError):
    """A store operation failed; the subclass says how."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(StoreError):
    """No such object (or bucket)."""


class AccessDenied(StoreError):
    """The store refused ferryman's credentials for this operation."""


class PreconditionFailed(StoreError):
    """If-Match did not hold: the object changed since its ETag was taken."""


class Throttled(StoreError):
    """The store asked ferryman to slow down (503 SlowDown, 429)."""

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Truncated(StoreError):
    """A body ended or was cut before every promised byte arrived."""


class Unavailable(StoreError):
    """The store could not be reached or answered with a server error."""


def http_error(exc: StoreError) -> HttpError:
    """The answer a client gets when a store operation fails."""
    if isinstance(exc, NotFound):
        return HttpError(404, "not_found", "no such object")
    if isinstance(exc, AccessDenied):
        return HttpError(403, "forbidden", "the store refused access")
    if isinstance(exc, PreconditionFailed):
        return HttpError(412, "precondition_failed", "the object changed")
    if isinstance(exc, Throttled):
        return HttpError(
            503,
            "store_throttled",
            "the store asked to slow down",
            (("Retry-After", str(exc.retry_after)),),
        )
    return HttpError(502, "store_failed", exc.detail)
