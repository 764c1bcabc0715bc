"""What an entry holds: the object version, how it is cut into blocks, its sealed meta.

Pure encoding shared by the filler's writer and the workers' readers
(entryfiles.py opens the files): `EntryMeta` and its JSON, meta sealed for an
encrypted cache, and where each block lives in `data` (its slot). How an
encrypted block is sealed as segments is segments.py's business.

An encrypted entry's meta names its segment size; one without it was written
in the layout before sealed segments (one seal per block) and is refused as
unreadable, so it is dropped and its object fetched again (decisions/0039).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from ferryman.cache import blockmap, segments
from ferryman.cache.crypto import BadBlock, BlockCipher
from ferryman.http.spans import Span
from ferryman.stores.base import ObjectInfo


class BadEntry(Exception):
    """An entry's files are not a valid entry for this cache (torn, foreign, other mode)."""


@dataclass(frozen=True)
class EntryMeta:
    """The version of an object an entry holds, and how it is cut into blocks."""

    key: str
    size: int
    etag: str
    last_modified: int
    content_type: str | None
    sha256: str | None
    block_size: int
    segment_size: int = 0  # encrypted: plaintext bytes per sealed segment; plain: 0

    @classmethod
    def from_info(cls, info: ObjectInfo, block_size: int) -> EntryMeta:
        """The entry for the version a HEAD reported, cut into `block_size` blocks."""
        return cls(
            info.key, info.size, info.etag, info.last_modified, info.content_type,
            info.sha256, block_size,
        )  # fmt: skip

    @property
    def sealed(self) -> bool:
        """Its blocks are sealed as segments (an encrypted cache's entry)."""
        return self.segment_size > 0

    def info(self) -> ObjectInfo:
        """The version this entry holds, as a HEAD would report it."""
        return ObjectInfo(
            self.key, self.size, self.etag, self.last_modified, self.sha256, self.content_type
        )

    def block_count(self) -> int:
        return blockmap.block_count(self.size, self.block_size)

    def block_span(self, index: int) -> Span:
        """The object bytes block `index` holds."""
        return blockmap.block_span(index, self.size, self.block_size)

    def run_span(self, blocks: range) -> Span:
        """The object bytes a run of consecutive blocks holds (a non-empty range)."""
        return Span(self.block_span(blocks.start).start, self.block_span(blocks.stop - 1).end)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> EntryMeta:
        """Parse `to_json`'s output; ValueError for anything else."""
        fields: Any = json.loads(raw)
        if not isinstance(fields, dict):
            raise ValueError("meta is not a JSON object")
        try:
            meta = cls(**fields)
        except TypeError as exc:
            raise ValueError(f"meta has the wrong fields: {exc}") from None
        checks = (
            isinstance(meta.key, str),
            isinstance(meta.etag, str),
            _is_int(meta.size) and meta.size >= 0,
            _is_int(meta.last_modified),
            _is_int(meta.block_size) and meta.block_size > 0,
            _is_int(meta.segment_size) and meta.segment_size >= 0,
            meta.content_type is None or isinstance(meta.content_type, str),
            meta.sha256 is None or isinstance(meta.sha256, str),
        )
        if not all(checks):
            raise ValueError("meta has a field of the wrong type")
        return meta


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- encoding shared by writer and reader -------------------------------------


def encode_meta(meta: EntryMeta, entry_id: str, cipher: BlockCipher | None) -> bytes:
    raw = meta.to_json()
    return raw if cipher is None else cipher.seal(raw, _meta_aad(entry_id))


def decode_meta(raw: bytes, entry_id: str, cipher: BlockCipher | None) -> EntryMeta:
    """The meta in `raw`; BadEntry if it is torn, plain in an encrypted cache or the reverse,
    or sealed under another key or for another entry."""
    try:
        if cipher is not None:
            raw = cipher.open(raw, _meta_aad(entry_id))
        meta = EntryMeta.from_json(raw)
    except (BadBlock, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are too
        raise BadEntry(f"entry {entry_id}: unreadable meta ({exc})") from None
    if meta.sealed != (cipher is not None):
        why = "written in the layout before sealed segments" if cipher else "names segments"
        raise BadEntry(f"entry {entry_id}: unreadable meta ({why})")
    return meta


def _meta_aad(entry_id: str) -> bytes:
    return b"meta" + entry_id.encode()


def slot_size(meta: EntryMeta) -> int:
    """Bytes of `data` between the starts of two blocks: a block, sealed if encrypted."""
    return stored_length(meta, meta.block_size)


def stored_length(meta: EntryMeta, length: int) -> int:
    """Bytes a block of `length` object bytes takes on disk."""
    if not meta.sealed:
        return length
    return segments.sealed_length(length, meta.segment_size)


def data_length(meta: EntryMeta) -> int:
    """The apparent length of a complete `data` file."""
    count = meta.block_count()
    if count == 0:
        return 0
    last = meta.block_span(count - 1).length
    return (count - 1) * slot_size(meta) + stored_length(meta, last)
