"""An in-memory Store for cache tests: real protocol, counters, and faults on demand.

It keeps the Store contract (stores/base.py) strictly: `read` yields exactly
end - start bytes or raises, If-Match is checked against the current ETag,
and every call is counted so tests can prove what went upstream. Faults are
queued and consumed one per read, in order; `hold_after` pauses a read
part-way until the test opens the gate, to observe what happens mid-run.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ferryman.stores.base import (
    ListEntry,
    NotFound,
    ObjectInfo,
    PreconditionFailed,
    Throttled,
    Truncated,
    Unavailable,
)


@dataclass
class Fault:
    """What the next read does instead of behaving.

    kind: "truncate" (stream `after` bytes, then Truncated), "reset" (the same,
    then Unavailable), "throttle" (Throttled before any byte), "extra" (stream
    every byte and then one more, breaking the contract), "change" (the object
    changes before the read starts, so If-Match fails), "bug" (an exception that
    is not a StoreError).
    """

    kind: str
    after: int = 0


@dataclass
class MemObject:
    data: bytes
    etag: str
    last_modified: int
    content_type: str | None = None
    sha256: str | None = None  # what ferryman's upload records in the metadata


@dataclass
class MemStore:
    chunk: int = 16 * 1024  # bytes per yielded piece, like a network read
    objects: dict[str, MemObject] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    stats: int = 0  # stat() calls
    reads: list[tuple[str, int, int]] = field(default_factory=list)  # (key, start, end)
    bytes_sent: int = 0
    hold_after: int | None = None  # pause every read after this many of its bytes
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    held: int = 0  # reads currently paused at the gate
    description: str = "memory"
    uploads: int = 0  # upload() calls
    upload_faults: list[object] = field(default_factory=list)  # "empty", "corrupt", an error
    _version: int = 0

    def put(self, key: str, data: bytes, content_type: str | None = None) -> str:
        self._version += 1
        digest = hashlib.md5(data + b"%d" % self._version, usedforsecurity=False).hexdigest()
        etag = f'"{digest}"'
        self.objects[key] = MemObject(data, etag, 1_700_000_000 + self._version, content_type)
        return etag

    async def stat(self, key: str) -> ObjectInfo:
        self.stats += 1
        await asyncio.sleep(0)
        obj = self.objects.get(key)
        if obj is None:
            raise NotFound(f"no object {key!r}")
        return ObjectInfo(
            key, len(obj.data), obj.etag, obj.last_modified, obj.sha256, obj.content_type
        )

    def read(
        self, key: str, start: int, end: int, *, if_match: str | None = None
    ) -> AsyncIterator[bytes]:
        return self._read(key, start, end, if_match)

    async def _read(
        self, key: str, start: int, end: int, if_match: str | None
    ) -> AsyncIterator[bytes]:
        self.reads.append((key, start, end))
        fault = self.faults.pop(0) if self.faults else None
        await asyncio.sleep(0)
        if fault is not None and fault.kind == "change":
            self.put(key, self.objects[key].data[::-1])
        if fault is not None and fault.kind == "throttle":
            raise Throttled("slow down", 3)
        if fault is not None and fault.kind == "bug":
            raise RuntimeError("a store client bug")
        obj = self.objects.get(key)
        if obj is None:
            raise NotFound(f"no object {key!r}")
        if if_match is not None and if_match != obj.etag:
            raise PreconditionFailed(f"{key!r} is now {obj.etag}, not {if_match}")
        data = obj.data[start:end]
        if fault is not None and fault.kind == "extra":
            data += b"!"
        cut = fault.after if fault is not None and fault.kind in ("truncate", "reset") else None
        if cut is not None:
            data = data[:cut]
        sent = 0
        while sent < len(data):
            if self.hold_after is not None and sent >= self.hold_after and not self.gate.is_set():
                self.held += 1
                try:
                    await self.gate.wait()
                finally:
                    self.held -= 1
            step = self.chunk
            if self.hold_after is not None and sent < self.hold_after:
                step = min(step, self.hold_after - sent)
            piece = data[sent : sent + step]
            sent += len(piece)
            self.bytes_sent += len(piece)
            yield piece
            await asyncio.sleep(0)
        if cut is not None:
            if fault is not None and fault.kind == "reset":
                raise Unavailable("connection reset by peer")
            raise Truncated(f"body ended after {cut} of {end - start} bytes")

    async def list(self, prefix: str) -> AsyncIterator[ListEntry]:
        """One level under `prefix`, in key order, as S3 with Delimiter "/" gives it."""
        seen: set[str] = set()
        for key in sorted(self.objects):
            if not key.startswith(prefix):
                continue
            name, slash, _ = key[len(prefix) :].partition("/")
            if name in seen:
                continue
            seen.add(name)
            obj = self.objects[key]
            if slash:
                yield ListEntry(name, True)
            else:
                yield ListEntry(name, False, len(obj.data), obj.last_modified)

    async def upload(
        self, key: str, fd: int, size: int, sha256: bytes, content_type: str | None = None
    ) -> None:
        """Keep what the fd holds; an `upload_faults` entry instead keeps b"" ("empty"),
        keeps other bytes of the same length under the right SHA-256 metadata
        ("corrupt": only reading them back shows it), or raises its StoreError."""
        self.uploads += 1
        fault = self.upload_faults.pop(0) if self.upload_faults else None
        if isinstance(fault, Exception):
            raise fault
        sent = os.pread(fd, size, 0)
        data = b"" if fault == "empty" else sent
        if fault == "corrupt":
            data = bytes(b ^ 0xFF for b in sent)
        self.put(key, data, content_type)
        self.objects[key].sha256 = hashlib.sha256(sent if fault == "corrupt" else data).hexdigest()

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)  # absent: nothing to do, as S3 answers

    async def prepare(self) -> None:
        pass

    async def close(self) -> None:
        pass
