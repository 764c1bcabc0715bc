"""PATH.part.json: what PATH.part holds, so that another run can continue it.

It names the download (the URL without its query: a re-signed URL of the
same file continues it), the version (the validator sent as If-Range, the
size, the digest the server announced) and each segment's progress. It is
written whole and renamed into place after the .part file's data is synced
(`save`), so what it says was written is on disk, whatever kills the
process. Anything unexpected in it (another format, a hand edit, a
segment outside the file) makes `load` return None: the download starts
over rather than trust it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ferryman.get.segments import Segment

FORMAT = 1
MAX_SIDECAR = 1024 * 1024  # far more than any real one: a bigger file is not ours


@dataclass(frozen=True, slots=True)
class Validator:
    """What If-Range carries: a strong ETag, or a Last-Modified date when that is all."""

    kind: str  # "etag" or "last-modified"
    value: str


@dataclass(slots=True)
class PartState:
    url: str  # the download's identity: the URL without its query
    validator: Validator | None
    size: int | None
    digest_field: str | None = None  # "Repr-Digest" or "Content-Digest", as the server sent it
    digest_value: str | None = None
    segments: list[Segment] = field(default_factory=list)


def identity(url: str) -> str:
    """The URL a sidecar is matched on: no query (signatures, expiry) and no fragment."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path}"


def sidecar_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def to_json(state: PartState) -> str:
    doc: dict[str, Any] = {
        "format": FORMAT,
        "url": state.url,
        "validator": None
        if state.validator is None
        else {"kind": state.validator.kind, "value": state.validator.value},
        "size": state.size,
        "digest": None
        if state.digest_field is None
        else {"field": state.digest_field, "value": state.digest_value},
        "segments": [[s.start, s.end, s.done] for s in state.segments],
    }
    return json.dumps(doc)


def from_json(text: str) -> PartState | None:
    """The state a sidecar describes, or None when it is not one this version wrote."""
    try:
        doc = json.loads(text)
        return _state(doc)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _state(doc: dict[str, Any]) -> PartState | None:
    if doc["format"] != FORMAT or not isinstance(doc["url"], str):
        return None
    size = doc["size"]
    if size is not None and (not _count(size)):
        return None
    validator = None
    if doc["validator"] is not None:
        kind, value = doc["validator"]["kind"], doc["validator"]["value"]
        if kind not in ("etag", "last-modified") or not isinstance(value, str):
            return None
        validator = Validator(kind, value)
    digest = doc["digest"]
    digest_field = digest_value = None
    if digest is not None:
        digest_field, digest_value = digest["field"], digest["value"]
        if digest_field not in ("Repr-Digest", "Content-Digest") or not isinstance(
            digest_value, str
        ):
            return None
    segments = [_segment(item, size) for item in doc["segments"]]
    if not segments or any(s is None for s in segments):
        return None
    state = PartState(doc["url"], validator, size, digest_field, digest_value)
    state.segments = [s for s in segments if s is not None]
    return state if _tiles(state.segments, size) else None


def _segment(item: list[Any], size: int | None) -> Segment | None:
    start, end, done = item
    if not (_count(start) and _count(done)) or (end is not None and not _count(end)):
        return None
    if end is None:
        return Segment(start, None, done) if size is None else None
    if start > end or start + done > end or (size is not None and end > size):
        return None
    return Segment(start, end, done)


def _tiles(segments: list[Segment], size: int | None) -> bool:
    """The segments cover [0, size) once each, in order (one open segment when no size)."""
    if size is None:
        return len(segments) == 1 and segments[0].start == 0
    position = 0
    for seg in segments:
        if seg.start != position or seg.end is None:
            return False
        position = seg.end
    return position == size


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def load(path: Path) -> PartState | None:
    """The sidecar at `path`, or None when it is missing or not to be trusted."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_SIDECAR + 1)
    except OSError:
        return None
    if len(raw) > MAX_SIDECAR:
        return None
    try:
        return from_json(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None


def save(path: Path, state: PartState) -> None:
    """Write the sidecar whole: a temporary beside it, fsync, rename, fsync the directory.

    The caller has synced the .part file's data first, so the sidecar never
    claims bytes that are not on disk.
    """
    temporary = path.with_name(path.name + ".tmp")
    data = to_json(state).encode("utf-8")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    fd = os.open(directory if str(directory) else ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path: Path) -> None:
    """The sidecar and its temporary gone (a missing one is fine)."""
    for each in (path, path.with_name(path.name + ".tmp")):
        try:
            os.unlink(each)
        except FileNotFoundError:
            pass
