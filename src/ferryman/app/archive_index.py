"""The member index of a tar archive: what a request through an archive may name.

Reading (blocking, run in a worker thread by app/archive.py): tarfile walks
the headers of a .tar, or of the decompressed stream of a .tar.gz/.tgz,
through a pread-based reader of its own (open_positional: no shared file
offset) and a guard that bounds what one archive can cost (header block
size, bytes walked, member count). Format problems end the index, they do
not raise; only I/O errors do, and those are not cached.

A .tar.gz is read through app/gzipstream.py to the end of its gzip stream,
not only to the end of the tar: zlib then checks every trailer (CRC-32 and
length of everything decompressed), and the index keeps each regular
member's own CRC-32, computed as its data goes by (tarfile would have
decompressed it to skip it anyway). A stream zlib refuses marks the index
`damaged`: none of its bytes are served. An extracted copy is checked
against its member's CRC-32 before any of it is (archive_copies.py), so the
gzip trailer vouches, through the index, for every byte that is sent.

Member names are normalised once, at index time: leading "./" and empty
segments go; an absolute name, a ".." anywhere, a dotfile segment, links,
devices, FIFOs and sparse files are left out of the index, so they are 404
and never listed.

Also here: the bounded LRU of indexes by archive identity (IndexCache), with
the Representations of members kept with each (MAX_REPRESENTATIONS), the
member ETag, and the pread-based reader. Extracting a member, and sharing
the copy: app/archive_copies.py. Limits, and why they are what they are:
docs/decisions/0009-archive-members.md and 0017-bounded-archive-copies.md.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import tarfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Protocol

from ferryman.app.fileat import Identity
from ferryman.app.gzipstream import GzipDamaged, GzipStream, GzipTruncated, NotGzip
from ferryman.app.listing import Entry
from ferryman.http.spans import Span

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from ferryman.app.plan import Representation

SUFFIXES = (".tar", ".tar.gz", ".tgz")
_COMPRESSED = (".tar.gz", ".tgz")
MAX_MEMBERS = 100_000  # members indexed per archive; the rest is left out (logged)
MAX_HEADER = 1024**2  # largest header block (pax, GNU long name) tarfile may read at once
MAX_SCAN = 16 * 1024**3  # decompressed bytes an index build may walk through (.tar.gz)
CACHE_ARCHIVES = 64  # indexes kept ...
CACHE_ENTRIES = 250_000  # ... and their total size in members and directories
# Representations (ETag and headers, about 1 KiB each) kept per index, for the
# members answered first: CACHE_ARCHIVES of them hold at most 64 MiB.
MAX_REPRESENTATIONS = 1024
CHUNK = 1024**2  # decompressed bytes handled at a time
_READ_BUFFER = 16 * 1024  # a header's neighbourhood; a seek past it drops the rest
_LAST_DATE = 253402300799  # 9999-12-31T23:59:59Z, the last HTTP-date


def is_archive_name(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


def is_compressed(name: str) -> bool:
    return name.lower().endswith(_COMPRESSED)


def normalise_member(name: str) -> str | None:
    """The member's path inside the archive, or None when it may not be served.

    "./a//b/" -> "a/b". Absolute names, ".." anywhere (even where it would
    stay inside, as GNU tar refuses them too) and dotfile segments give None.
    """
    if name.startswith("/"):
        return None
    parts = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part.startswith("."):  # "..", or a dotfile: a request could not name it
            return None
        parts.append(part)
    return "/".join(parts) or None


def member_etag(st: os.stat_result, member: str, offset: int) -> str:
    """Strong: the archive's identity (as file_etag) plus the member's name and offset."""
    text = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}\0{member}\0{offset}"
    digest = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=12)
    return f'"{digest.hexdigest()}"'


# -- the index ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    offset: int  # of its data in the (decompressed) tar stream
    size: int
    mtime: int
    crc: int | None = None  # CRC-32 of its data, for members of a .tar.gz


@dataclass(slots=True)
class ArchiveIndex:
    """Regular members by normalised name; each directory's entries ("" is the top)."""

    mtime: int  # for directories the archive does not describe
    files: dict[str, Member] = field(default_factory=dict)
    dirs: dict[str, dict[str, Entry]] = field(default_factory=lambda: {"": {}})
    readable: bool = True  # False: not a tar archive at all (every request is 404)
    problem: str | None = None  # why reading stopped early, if it did
    damaged: str | None = None  # .tar.gz: zlib refused the stream; nothing of it is served
    verified: bool = False  # .tar.gz: read to the end, every gzip trailer matched
    seen: int = 0  # members walked, kept or not
    # What the server made of members of this version of the archive for its answers
    # (app/archive.py), by name: made at a member's first answer, then kept here.
    representations: dict[str, Representation] = field(default_factory=dict)

    @property
    def cost(self) -> int:
        return len(self.files) + len(self.dirs)

    def add(self, info: tarfile.TarInfo, archive_size: int | None, crc: int | None = None) -> None:
        name = normalise_member(info.name)
        if name is None:
            return
        mtime = min(max(int(info.mtime), 0), _LAST_DATE)
        if info.isdir():
            self._directory(name, mtime)
        elif info.isreg() and not info.issparse():
            if archive_size is not None and not _data(info).within(archive_size):
                return  # truncated archive: the data is not all there
            self.files[name] = Member(info.offset_data, info.size, mtime, crc)
            parent, _, base = name.rpartition("/")
            self._directory(parent)
            self.dirs[parent][base] = Entry(base, False, info.size, mtime)
        else:  # link, device, FIFO, sparse: never served; it also hides an earlier file
            if self.files.pop(name, None) is not None:
                parent, _, base = name.rpartition("/")
                self.dirs[parent].pop(base, None)

    def _directory(self, name: str, mtime: int | None = None) -> None:
        """Make sure `name` and its parents exist; `mtime` from the archive if it has one."""
        while mtime is not None or name not in self.dirs:
            self.dirs.setdefault(name, {})
            if not name:
                return
            parent, _, base = name.rpartition("/")
            siblings = self.dirs.setdefault(parent, {})
            old = siblings.get(base)
            if mtime is None:
                mtime = old.mtime if old is not None and old.is_dir else self.mtime
            siblings[base] = Entry(base, True, 0, mtime)
            name, mtime = parent, None


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...
    def seek(self, offset: int, whence: int = os.SEEK_SET, /) -> int: ...
    def tell(self) -> int: ...


class _Guarded:
    """The file object tarfile reads through: bounds what one archive can cost.

    A header block larger than MAX_HEADER is refused (tarfile reads a pax or
    GNU long-name block whole, so a forged size would be read into memory),
    and so is a seek beyond `limit` (for gzip, every forward seek is
    decompression) or backwards in a gzip stream.
    """

    def __init__(self, raw: _Readable, limit: int) -> None:
        self.raw = raw
        self.limit = limit

    def write(self, data: bytes) -> int:
        raise tarfile.ReadError("archives are read-only")

    def close(self) -> None:
        """The caller closes what it opened."""

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > MAX_HEADER:
            raise tarfile.ReadError(f"a header block of {size} bytes (limit {MAX_HEADER})")
        return self.raw.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET and offset > self.limit:
            raise tarfile.ReadError(f"the archive goes on past {self.limit} bytes")
        try:
            return self.raw.seek(offset, whence)
        except ValueError as exc:  # backwards in a gzip stream
            raise tarfile.ReadError(str(exc)) from None

    def tell(self) -> int:
        return self.raw.tell()


def read_index(raw: IO[bytes], *, compressed: bool, size: int, mtime: int) -> ArchiveIndex:
    """Index a tar stream (blocking). Format problems end the index, they do not raise.

    What was read before a problem stays usable (members of a huge or
    truncated archive up to that point); a problem before the first member
    makes the index unreadable. A .tar.gz is read to its end, so that its
    gzip trailers are checked, and each regular member's CRC-32 is kept: a
    stream that zlib refuses (a trailer that does not match included) marks
    the index `damaged`, and nothing of it is served. Raises OSError only
    for I/O errors, which are not the archive's fault and must not be cached.
    """
    index = ArchiveIndex(mtime)
    stream = GzipStream(raw) if compressed else None
    guarded = _Guarded(stream or raw, MAX_SCAN if compressed else size)
    try:
        _walk(index, guarded, stream, size)
        if stream is not None:
            _read_to_the_end(index, stream)
    except NotGzip as exc:
        index.problem = str(exc)
    except GzipTruncated as exc:
        index.problem = str(exc)
    except GzipDamaged as exc:
        index.problem = index.damaged = f"the gzip stream is damaged: {exc}"
    index.readable = index.seen > 0 or index.problem is None
    return index


def _walk(index: ArchiveIndex, guarded: _Guarded, stream: GzipStream | None, size: int) -> None:
    """Add every member tarfile finds; a format problem ends the walk (index.problem)."""
    try:
        with tarfile.TarFile(fileobj=guarded, mode="r") as tar:
            while (info := tar.next()) is not None:
                if index.seen >= MAX_MEMBERS:
                    raise tarfile.ReadError(f"more than {MAX_MEMBERS} members")
                index.seen += 1
                if stream is None:
                    index.add(info, size)
                elif info.isreg() and not info.issparse():
                    index.add(info, None, _data_crc(stream, info))
                else:
                    index.add(info, None)
                # The index keeps what it needs; TarFile would keep every TarInfo.
                tar.members.clear()  # type: ignore[attr-defined]
    except tarfile.TarError as exc:
        index.problem = str(exc) or type(exc).__name__


def _data_crc(stream: GzipStream, info: tarfile.TarInfo) -> int:
    """The CRC-32 of a member's data, read from the stream (which tarfile would skip anyway)."""
    data = _data(info)
    if not data.within(MAX_SCAN):
        raise tarfile.ReadError(f"the archive goes on past {MAX_SCAN} bytes")
    stream.seek(data.start)
    crc = 0
    while stream.position < data.end:
        chunk = stream.chunk(min(CHUNK, data.end - stream.position))
        if not chunk:
            raise GzipTruncated(f"the stream ends inside {info.name!r}")
        crc = zlib.crc32(chunk, crc)
    return crc


def _data(info: tarfile.TarInfo) -> Span:
    """Where a member's data lies in the (decompressed) tar stream.

    A negative size is a format problem: tarfile reads one from a base-256
    size field as it is, and a member of -16 bytes cannot be served.
    """
    if info.size < 0:
        raise tarfile.ReadError(f"{info.name!r} has a negative size ({info.size})")
    return Span(info.offset_data, info.offset_data + info.size)


def _read_to_the_end(index: ArchiveIndex, stream: GzipStream) -> None:
    """Decompress what is left after the tar's end, so that every trailer is checked."""
    while stream.position <= MAX_SCAN:
        if not stream.chunk(CHUNK):
            index.verified = True
            return
    index.problem = index.problem or f"the archive goes on past {MAX_SCAN} bytes"


class IndexCache:
    """Least recently used indexes, bounded in archives and in total entries."""

    def __init__(self, archives: int = CACHE_ARCHIVES, entries: int = CACHE_ENTRIES) -> None:
        self.archives = archives
        self.entries = entries
        self.cost = 0
        self._items: OrderedDict[Identity, ArchiveIndex] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Identity) -> ArchiveIndex | None:
        index = self._items.get(key)
        if index is not None:
            self._items.move_to_end(key)
        return index

    def put(self, key: Identity, index: ArchiveIndex) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self.cost -= old.cost
        self._items[key] = index
        self.cost += index.cost
        while len(self._items) > 1 and (
            len(self._items) > self.archives or self.cost > self.entries
        ):
            _, evicted = self._items.popitem(last=False)
            self.cost -= evicted.cost


# -- reading without a shared file offset ----------------------------------------------


class _PositionalFile(io.RawIOBase):
    """Reads a descriptor with pread at a position of its own; closes it if it owns it.

    A dup() shares its file offset with the original (and every other dup), so
    reading through it would move everyone's; pread moves no one's.
    """

    def __init__(self, fd: int, owned: bool) -> None:
        super().__init__()
        self.fd = fd
        self.owned = owned
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        count = os.preadv(self.fd, [buffer], self.position)
        self.position += count
        return count

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self.position
        elif whence == os.SEEK_END:
            offset += os.fstat(self.fd).st_size
        if offset < 0:
            raise OSError(errno.EINVAL, "negative seek position")
        self.position = offset
        return offset

    def tell(self) -> int:
        return self.position

    def close(self) -> None:
        if not self.closed and self.owned:
            os.close(self.fd)
        super().close()


def open_positional(fd: int, *, owned: bool = True) -> io.BufferedReader:
    """A buffered, seekable reader of `fd` that leaves its file offset alone.

    Closing the reader closes `fd` when it is `owned`.
    """
    return io.BufferedReader(_PositionalFile(fd, owned), buffer_size=_READ_BUFFER)
