"""One cache entry's files, opened: the filler's writer and a worker's reader.

An entry is a directory (decision 0012) holding:

    meta   JSON of EntryMeta; sealed (aad b"meta" + id) when encrypted; written
           once, its mtime is when a HEAD last confirmed the version
    data   sparse; block i at offset i * slot (slot = block size; encrypted: the
           block sealed as segments, 28 bytes more per segment: segments.py)
    map    one byte per block: 1 present, 0 not
    used   empty; its mtime is the entry's last use

Both handles open every file relative to a descriptor of the entry's
directory, so they see one entry even if it is renamed into trash meanwhile:
a reader never pairs the meta of one version with the data of another.

Ownership: an EntryWriter (the filler, the only writer) owns its descriptors
and holds a shared flock on `data` while open, so the evictor skips the entry
while it is being filled. An EntryReader (one per request in a worker) owns
its descriptors; `acquire` takes the shared flock that marks the entry in use
for as long as a transfer sends from it, and `close` releases everything.

What the meta holds and how it is sealed is entrymeta.py's business.

Crash rule: a block is written and fdatasynced before its map byte is set,
so a crash leaves a block absent, never present with wrong bytes. Clearing a
map byte is fsynced, because a cleared byte that comes back after a power
loss over a half-rewritten block would be the unsafe direction.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time

from ferryman.cache import segments
from ferryman.cache.crypto import BadBlock, BlockCipher
from ferryman.cache.entrymeta import (
    BadEntry,
    EntryMeta,
    data_length,
    decode_meta,
    encode_meta,
    slot_size,
    stored_length,
)
from ferryman.http.body import FileRegion
from ferryman.http.spans import Span
from ferryman.pagecache import read_nowait, read_nowait_into

__all__ = [
    "DATA", "MAP", "META", "USED", "BadEntry", "EntryMeta", "EntryReader", "EntryWriter",
    "data_length", "decode_meta", "encode_meta", "pread_exact", "read_meta",
]  # fmt: skip

META, DATA, MAP, USED = "meta", "data", "map", "used"
TOUCH_INTERVAL = 10.0  # seconds: `used` is rewritten at most this often per reader
_RO = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
_RW = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW
_MAX_META = 1 << 20


def read_meta(dir_fd: int, entry_id: str, cipher: BlockCipher | None) -> tuple[EntryMeta, float]:
    """(meta, mtime of the meta file) of the entry open as `dir_fd`."""
    fd = os.open(META, _RO, dir_fd=dir_fd)
    try:
        mtime = os.fstat(fd).st_mtime
        raw = os.read(fd, _MAX_META)
    finally:
        os.close(fd)
    return decode_meta(raw, entry_id, cipher), mtime


def pread_exact(fd: int, length: int, offset: int) -> bytes:
    """`length` bytes at `offset`, fewer only at the end of the file."""
    data = os.pread(fd, length, offset)
    if len(data) == length or not data:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = os.pread(fd, length - got, offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _touch(name: str, dir_fd: int) -> None:
    """Set a file's mtime to now; an entry dropped meanwhile has nothing left to record."""
    try:
        os.utime(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _open_files(dir_fd: int, flags: int) -> tuple[int, int]:
    data_fd = os.open(DATA, flags, dir_fd=dir_fd)
    try:
        map_fd = os.open(MAP, flags, dir_fd=dir_fd)
    except BaseException:
        os.close(data_fd)
        raise
    return data_fd, map_fd


def _open_piece(
    fd: int,
    cipher: BlockCipher,
    entry_id: str,
    meta: EntryMeta,
    index: int,
    piece: Span | None,
    *,
    nowait: bool = False,
) -> list[bytes] | None:
    """Plaintext `piece` (block-relative; None: the whole block) of encrypted block `index`,
    one chunk per segment.

    Reads only the segments that hold it. With `nowait`, None if they are not
    all in the page cache. BadBlock if one is cut short or fails its check.
    """
    length = meta.block_span(index).length
    if piece is None:
        piece = Span(0, length)
    run = segments.sealed_run(
        segments.covering(piece, meta.segment_size), length, meta.segment_size
    )
    offset = index * slot_size(meta) + run.start
    sealed: bytes | memoryview
    if nowait:
        sealed = memoryview(_scratch(run.length))[: run.length]
        got = read_nowait_into(fd, sealed, offset)
        if got < 0 or (got < run.length and not _at_end(fd, offset + got)):
            return None
        sealed = sealed[:got]
    else:
        sealed = pread_exact(fd, run.length, offset)
    aad = segments.block_aad(entry_id, meta.etag, index)
    return segments.open_piece(cipher, sealed, piece, length, meta.segment_size, aad)


# Sealed bytes read without waiting land in a buffer kept per thread, not in a new one
# per read: opening returns new bytes and keeps no view of it. A fresh buffer the size
# of a 64 KiB range's two segments (just over 128 KiB) costs an allocation malloc may
# serve from mmap, and its page faults, on every answer. Its size is bounded by what
# callers read without waiting (THREAD_DECRYPT in cached.py; more goes to a thread).
_scratch_of = threading.local()


def _scratch(length: int) -> bytearray:
    """This thread's buffer for sealed bytes, at least `length` long."""
    buffer: bytearray | None = getattr(_scratch_of, "buffer", None)
    if buffer is None or len(buffer) < length:
        buffer = bytearray(length)
        _scratch_of.buffer = buffer
    return buffer


def _at_end(fd: int, offset: int) -> bool:
    """A short read at `offset` came from the end of the file, not from a cold page."""
    return os.fstat(fd).st_size <= offset


# -- the writer -----------------------------------------------------------------


class EntryWriter:
    """The filler's handle on one entry. Blocking calls: run them in threads.

    Different blocks may be written from different threads at once; one block
    is written by one thread at a time (the filler's single flight).
    `checked_at` is when a HEAD last confirmed the version (meta's mtime).
    """

    def __init__(
        self, dir_fd: int, entry_id: str, meta: EntryMeta, cipher: BlockCipher | None
    ) -> None:
        """Take ownership of `dir_fd` (closed by `close`, or here on failure)."""
        self.entry_id = entry_id
        self.meta = meta
        self.encrypted = cipher is not None
        self._cipher = cipher
        self._dir_fd = dir_fd
        self._data_fd = self._map_fd = -1
        try:
            self._data_fd, self._map_fd = _open_files(dir_fd, _RW)
            fcntl.flock(self._data_fd, fcntl.LOCK_SH)  # in use: the evictor skips it
            self.checked_at = os.stat(META, dir_fd=dir_fd).st_mtime  # last confirming HEAD
            count = meta.block_count()
            self.present = bytearray(pread_exact(self._map_fd, count, 0))
            if len(self.present) != count:
                raise BadEntry(f"entry {entry_id}: map has {len(self.present)} of {count} bytes")
        except BaseException:
            self.close()
            raise
        self.slot = slot_size(meta)  # bytes of `data` from one block to the next

    def write_block(self, index: int, data: bytes) -> None:
        """Store block `index` durably, then mark it present. OSError on disk errors."""
        length = self.meta.block_span(index).length
        if len(data) != length:
            raise ValueError(f"block {index} is {length} bytes, not {len(data)}")
        if self.present[index]:
            self.clear_block(index)  # never rewrite bytes that are marked present
        if self._cipher is not None:
            aad = segments.block_aad(self.entry_id, self.meta.etag, index)
            data = segments.seal_block(self._cipher, data, self.meta.segment_size, aad)
        _pwrite_all(self._data_fd, data, index * self.slot)
        os.fdatasync(self._data_fd)
        os.pwrite(self._map_fd, b"\x01", index)
        self.present[index] = 1

    def stored_length(self, index: int) -> int:
        """Bytes block `index` takes on disk (sealed: with its segments' nonces and tags)."""
        return stored_length(self.meta, self.meta.block_span(index).length)

    def clear_block(self, index: int) -> None:
        """Mark block `index` absent (a bad block, to be fetched again)."""
        self.meta.block_span(index)  # IndexError outside the object
        os.pwrite(self._map_fd, b"\x00", index)
        os.fdatasync(self._map_fd)
        self.present[index] = 0

    def verify_block(self, index: int) -> bool:
        """Encrypted: every segment of the stored block passes its check. Plain: True."""
        if self._cipher is None:
            return True
        try:
            _open_piece(self._data_fd, self._cipher, self.entry_id, self.meta, index, None)
        except BadBlock:
            return False
        return True

    def mark_checked(self) -> None:
        """Record that a HEAD confirmed this version just now (meta's mtime)."""
        _touch(META, self._dir_fd)
        self.checked_at = time.time()

    def touch_used(self) -> None:
        _touch(USED, self._dir_fd)

    def close(self) -> None:
        """Release the descriptors (and with them the in-use lock). Idempotent."""
        for name in ("_map_fd", "_data_fd", "_dir_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                setattr(self, name, -1)
                os.close(fd)

    def __enter__(self) -> EntryWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- the reader -----------------------------------------------------------------


class EntryReader:
    """A worker's handle on one entry, opened per request. Never writes an entry byte.

    `region` and `present` are cheap (no syscall / one pread); `read_block`
    and `acquire` may touch the disk, so callers on an event loop run them in
    a thread when the data may be cold.
    """

    def __init__(
        self,
        dir_fd: int,
        path: str,
        entry_id: str,
        cipher: BlockCipher | None,
    ) -> None:
        """Take ownership of `dir_fd`; BadEntry or OSError (closing it) if not an entry."""
        self.entry_id = entry_id
        self.encrypted = cipher is not None
        self._cipher = cipher
        self._path = path
        self._dir_fd = dir_fd
        self.data_fd = self._map_fd = -1
        self._held = False
        self._touched = float("-inf")
        try:
            self.meta, self.checked_at = read_meta(dir_fd, entry_id, cipher)
            self.data_fd, self._map_fd = _open_files(dir_fd, _RO)
        except BaseException:
            self.close()
            raise

    def present(self, blocks: range) -> bool:
        """Every block of `blocks` is present (an empty range: True)."""
        if not blocks:
            return True
        marks = os.pread(self._map_fd, len(blocks), blocks.start)
        return len(marks) == len(blocks) and b"\x00" not in marks

    def missing(self, blocks: range) -> list[int]:
        """The blocks of `blocks` that are not present."""
        if not blocks:
            return []
        marks = os.pread(self._map_fd, len(blocks), blocks.start)
        return [block for i, block in enumerate(blocks) if i >= len(marks) or not marks[i]]

    def region(self, span: Span) -> FileRegion:
        """Object bytes `span` as a region of `data` (plain entries only).

        The caller has checked that the blocks are present (and holds `acquire`).
        """
        if self.encrypted:
            raise ValueError("an encrypted entry has no plaintext region; use read_block")
        if not span.within(self.meta.size):
            raise ValueError(f"{span} is outside {self.meta.size} bytes")
        return FileRegion(self.data_fd, span.start, span.length)

    def read_block(self, index: int) -> bytes:
        """The plaintext of block `index`; BadBlock if it fails its check or is cut short."""
        return self.read_piece(index, self.meta.block_span(index))

    def read_piece(self, index: int, piece: Span) -> bytes:
        """Object bytes `piece` (within block `index`, non-empty), opening only the segments
        that hold them; BadBlock if one fails its check or is cut short."""
        within = self._in_block(index, piece)
        if self._cipher is None:  # plain: an object's offsets are offsets in `data`
            data = pread_exact(self.data_fd, piece.length, piece.start)
            if len(data) != piece.length:
                raise BadBlock(f"block {index}: {len(data)} of {piece.length} bytes on disk")
            return data
        chunks = _open_piece(self.data_fd, self._cipher, self.entry_id, self.meta, index, within)
        assert chunks is not None  # not asked `nowait`
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def read_chunks(self, index: int, piece: Span) -> list[bytes]:
        """`read_piece` as one chunk per segment (encrypted entries), no byte copied twice."""
        assert self._cipher is not None
        within = self._in_block(index, piece)
        chunks = _open_piece(self.data_fd, self._cipher, self.entry_id, self.meta, index, within)
        assert chunks is not None  # not asked `nowait`
        return chunks

    def read_chunks_nowait(self, index: int, piece: Span) -> list[bytes] | None:
        """`read_chunks` if the bytes to open are in the page cache, else None (never blocks
        on the disk)."""
        assert self._cipher is not None
        piece = self._in_block(index, piece)
        return _open_piece(
            self.data_fd, self._cipher, self.entry_id, self.meta, index, piece, nowait=True
        )

    def opened_length(self, index: int, piece: Span) -> int:
        """Bytes read_piece opens to answer `piece` of block `index` (encrypted entries)."""
        run = segments.covering(self._in_block(index, piece), self.meta.segment_size)
        length = self.meta.block_span(index).length
        return segments.sealed_run(run, length, self.meta.segment_size).length

    def whole_nowait(self) -> bytes | None:
        """Every byte of the object, if all of it is in the page cache, else None (never
        blocks on the disk). Encrypted: every segment opened; BadBlock if one fails."""
        size = self.meta.size
        if self._cipher is None:
            data = read_nowait(self.data_fd, 0, size)
            return data if data is not None and len(data) == size else None
        pieces = []
        for index in range(self.meta.block_count()):
            span = self.meta.block_span(index)
            chunks = self.read_chunks_nowait(index, span)
            if chunks is None:
                return None
            pieces.extend(chunks)
        return b"".join(pieces)

    def _in_block(self, index: int, piece: Span) -> Span:
        """`piece` as offsets within block `index`'s plaintext; ValueError if outside it."""
        block = self.meta.block_span(index)
        if not (piece.length and block.start <= piece.start and piece.end <= block.end):
            raise ValueError(f"{piece} is not within block {index} ({block})")
        return Span(piece.start - block.start, piece.end - block.start)

    def acquire(self) -> bool:
        """Mark the entry in use (shared flock on data); False if it is no longer cached.

        After the lock the entry must still be where it was: the evictor renames
        an entry away only while it holds the exclusive lock, so an entry found
        in place now stays until `release`. False means the caller treats the
        request as a miss.
        """
        if self._held:
            return True
        fcntl.flock(self.data_fd, fcntl.LOCK_SH)
        try:
            here = os.fstat(self._dir_fd)
            there = os.stat(self._path)
            current = (
                os.fstat(self.data_fd).st_nlink > 0
                and here.st_ino == there.st_ino
                and here.st_dev == there.st_dev
            )
        except FileNotFoundError:
            current = False
        if not current:
            fcntl.flock(self.data_fd, fcntl.LOCK_UN)
            return False
        self._held = True
        return True

    def release(self) -> None:
        if self._held:
            self._held = False
            fcntl.flock(self.data_fd, fcntl.LOCK_UN)

    def touch_used(self) -> None:
        """Record a use for LRU and age; cheap to call per request (rewrites rarely).

        A cache disk that takes no writes (read-only, failing) records nothing:
        the answer does not depend on it, and the filler reports the condition.
        """
        now = time.monotonic()
        if now - self._touched < TOUCH_INTERVAL:
            return
        self._touched = now
        try:
            if time.time() - os.stat(USED, dir_fd=self._dir_fd).st_mtime < TOUCH_INTERVAL:
                return  # another request recorded a use just now
            _touch(USED, self._dir_fd)
        except OSError:
            return

    def close(self) -> None:
        """Release the lock and the descriptors. Idempotent."""
        self.release()
        for name in ("_map_fd", "data_fd", "_dir_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                setattr(self, name, -1)
                os.close(fd)

    def __enter__(self) -> EntryReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
