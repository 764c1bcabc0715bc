"""Parsed inventories kept in the state directory, named by the digest of their bytes.

An audit on a schedule reads the same inventory file every time, and parsing
it (every line checked, every key validated) is a sixth of a repeated
audit's time. So `audit` and `repair` keep what a parse gave, and the next
run whose file holds exactly the same bytes uses it instead of parsing:

- The name of a kept parse is the SHA-256 of the parser's version, the
  file's base name (it picks the format) and the file's bytes. The same bytes
  parse to the same entries, so nothing else can make a kept parse wrong.
- The bytes are hashed as they are parsed, so a file changed while it is read
  is kept under the digest of what was read (and its next read, of other
  bytes, parses anew).
- A kept parse is written whole (temporary file, rename) and only after a
  parse that succeeded; one that cannot be read back is parsed anew and
  rewritten. At most KEEP are kept, the least recently used removed first.
- A kept parse is text: each entry's key, size, sha256 and md5 (empty when
  unknown), every field ended by a NUL, which no key holds. It reads back with
  one split, and reading it can only give entries, never run anything.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from ferryman.audit.inventory import MAX_LINE, InventoryError, parse_inventory
from ferryman.audit.model import Expected

VERSION = b"ferryman inventory parse 1"  # change with anything that changes a parse
KEEP = 8
_CHUNK = 1 << 20


class _Hashing:
    """A binary stream that hashes what is read from it."""

    def __init__(self, stream: BinaryIO, digest: hashlib._Hash) -> None:
        self.stream = stream
        self.digest = digest

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.digest.update(data)
        return data


def read_inventory_kept(
    path: str | os.PathLike[str], directory: Path, *, max_line: int = MAX_LINE
) -> list[Expected]:
    """The entries of the inventory at `path`, sorted by key: kept from an earlier parse
    of the same bytes in `directory`, or parsed (and kept)."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as stream:
            kept = _kept_file(directory, _digest_of(name, max_line, stream))
            entries = _load(kept)
            if entries is not None:
                os.utime(kept)  # recently used: kept longest
                return entries
            stream.seek(0)
            hashing = _Hashing(stream, _digest_start(name, max_line))
            entries = parse_inventory(hashing, name, max_line=max_line)
            while hashing.read(_CHUNK):  # what a parse left unread counts too
                pass
    except OSError as error:
        raise InventoryError(f"cannot read inventory {name}: {error.strerror or error}") from None
    _keep(directory, _kept_file(directory, hashing.digest.hexdigest()), entries)
    return entries


def _digest_start(name: str, max_line: int) -> hashlib._Hash:
    digest = hashlib.sha256(VERSION)
    digest.update(b"\0%d\0%s\0" % (max_line, os.fsencode(os.path.basename(name))))
    return digest


def _digest_of(name: str, max_line: int, stream: BinaryIO) -> str:
    digest = _digest_start(name, max_line)
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _kept_file(directory: Path, digest: str) -> Path:
    return directory / f"{digest}.entries"


def _load(kept: Path) -> list[Expected] | None:
    """The entries kept in `kept`, or None if there are none to trust."""
    try:
        data = kept.read_bytes()
    except OSError:
        return None
    try:
        fields = data.decode("utf-8").split("\0")
    except UnicodeDecodeError:
        return None
    if not data or fields.pop() != "" or len(fields) % 4:
        return None  # cut short or not ours: parsed anew and rewritten
    keys, sizes, sha256s, md5s = (fields[i::4] for i in range(4))
    try:
        return [
            Expected(key, int(size) if size else None, sha256 or None, md5 or None)
            for key, size, sha256, md5 in zip(keys, sizes, sha256s, md5s, strict=True)
        ]
    except ValueError:
        return None


def _keep(directory: Path, kept: Path, entries: list[Expected]) -> None:
    """Keep the parse; a state directory that cannot take it costs only the next parse."""
    text = "".join(
        f"{e.key}\0{'' if e.size is None else e.size}\0{e.sha256 or ''}\0{e.md5 or ''}\0"
        for e in entries
    )
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".kept-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(text.encode("utf-8"))
            os.replace(temporary, kept)
        except BaseException:
            os.unlink(temporary)
            raise
        _prune(directory)
    except OSError:
        return


def _prune(directory: Path) -> None:
    """At most KEEP kept parses: the least recently used go (and a temporary file that a
    killed run left, once it is an hour old)."""
    kept = []
    abandoned = time.time_ns() - 3600 * 10**9
    for entry in os.scandir(directory):
        try:
            changed = entry.stat().st_mtime_ns
        except FileNotFoundError:
            continue
        if entry.name.endswith(".entries"):
            kept.append((changed, entry.path))
        elif entry.name.startswith(".kept-") and changed < abandoned:
            kept.append((-1, entry.path))  # sorts last: removed
    kept.sort(reverse=True)
    for _, path in kept[KEEP:]:
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
