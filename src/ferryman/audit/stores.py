"""The stores an audit reads: a local directory or an S3 bucket (prefix), listed whole.

Each store is named twice: `name` exactly as the user gave it (reports show
that), and `id`, its canonical form (an absolute directory, or
`s3://bucket/prefix`), under which the catalog keeps its copies.

`listing()` yields every key with its size and the store's own identifier
of the version, in code-point order of the keys (the order the catalog and
S3 list in, which compare.py's merge join needs):

- a directory is walked without following symlinks (a symlink is neither
  listed nor entered: a copy is a regular file under the root), skipping
  dot-names (never served, never written by ferryman: the state directory,
  upload temporaries); its identifier is "inode:mtime_ns:ctime_ns";
- a bucket is listed with ListObjectsV2 without a delimiter, page by page;
  its identifier is the ETag.

`listing(after)` may leave out the keys up to `after` (a resumed run has
checked them): a bucket's listing starts after it, a directory is walked
whole (the run skips what it checked either way).

`read(key)` streams a copy's bytes. A copy that cannot be read is
`Unreadable` (a finding); a listing that fails is `StoreUnavailable` (the
run is then incomplete for that store).

A directory is audited by localtree.py, a bucket by bucket.py.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Protocol

from ferryman.audit.model import Stored
from ferryman.errors import FerrymanError

CHUNK = 1024 * 1024  # bytes per read of a copy


class Unreadable(FerrymanError):
    """One copy could not be read (or stat'ed): a finding, not the store's failure."""


class StoreUnavailable(FerrymanError):
    """The store could not be listed: the run cannot be complete for it."""


class AuditStore(Protocol):
    name: str  # as given on the command line
    id: str  # canonical: the catalog's name for the store

    def listing(self, after: str | None = None) -> Generator[Stored, None, None]: ...
    def read(self, key: str) -> Iterator[bytes]: ...
    def close(self) -> None: ...
