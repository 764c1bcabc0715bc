"""The filler protocol: what workers and the cache filler say to each other (pure).

Newline-delimited JSON over a Unix stream socket, one connection per cold
request (decisions/0012). A worker opens an object, then asks for blocks;
the filler answers each block as soon as it is present, in whatever order
that happens:

    worker -> filler                      filler -> worker
    {"op": "open", "key": K,              {"op": "entry", "meta": {...}}
     "check": bool}                       | {"op": "error", "kind": KIND,
                                             "detail": str, "retry_after": int}
    {"op": "want", "first": i,            one per block, as each lands:
     "last": j}          (inclusive)      {"op": "have", "block": n}
                                          | {"op": "failed", "block": n, "kind": KIND,
                                             "detail": str, "retry_after": int}
    {"op": "bad", "block": n}             then "have" / "failed" for n once refetched
    {"op": "stats"}                       {"op": "stats", "stats": {name: number}}
    {"op": "health"}                      {"op": "health", "state": "ok" | "degraded: ...",
                                           "since": unix time | 0}

`check` asks for a HEAD even when a recent check exists. KIND names a
StoreError subclass (stores/base.py), or CacheDeclined (cache/health.py: the
filler will not cache this, the worker answers from the store); `store_error`
and `error_kind` are the one mapping between the two. A line longer than
MAX_LINE, or anything that is not one of these messages, is a BadMessage: the
reader closes the connection.

This module does no I/O: bytes in, messages out, and back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ferryman.cache.health import CacheDeclined
from ferryman.errors import FerrymanError
from ferryman.stores.base import (
    AccessDenied,
    NotFound,
    PreconditionFailed,
    StoreError,
    Throttled,
    Truncated,
    Unavailable,
)

__all__ = [
    "MAX_LINE",
    "Bad",
    "BadMessage",
    "Entry",
    "Error",
    "Failed",
    "Have",
    "Health",
    "HealthReply",
    "Open",
    "Reply",
    "Request",
    "Stats",
    "StatsReply",
    "Want",
    "decode_reply",
    "decode_request",
    "encode",
    "error_kind",
    "error_reply",
    "failed_reply",
    "store_error",
]

MAX_LINE = 64 * 1024  # bytes, newline included
MAX_BLOCK = 2**40  # no object has this many blocks; bounds what a peer can make us allocate
MAX_KEY = 4096  # S3 keys stop at 1024 bytes; leave room for prefixes and escapes


class BadMessage(FerrymanError):
    """A line that is not a filler protocol message (or is too long to be one)."""


# -- messages -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Open:
    key: str
    check: bool = False


@dataclass(frozen=True, slots=True)
class Want:
    first: int
    last: int  # inclusive, as on the wire

    @property
    def blocks(self) -> range:
        return range(self.first, self.last + 1)


@dataclass(frozen=True, slots=True)
class Bad:
    block: int


@dataclass(frozen=True, slots=True)
class Stats:
    pass


@dataclass(frozen=True, slots=True)
class Health:
    pass


@dataclass(frozen=True, slots=True)
class Entry:
    meta: dict[str, Any]  # EntryMeta's fields; a worker reads only the etag (link.py)


@dataclass(frozen=True, slots=True)
class Error:
    kind: str
    detail: str
    retry_after: int = 0


@dataclass(frozen=True, slots=True)
class Have:
    block: int


@dataclass(frozen=True, slots=True)
class Failed:
    block: int
    kind: str
    detail: str
    retry_after: int = 0


@dataclass(frozen=True, slots=True)
class StatsReply:
    stats: dict[str, int | float]


@dataclass(frozen=True, slots=True)
class HealthReply:
    state: str  # CacheHealth.describe(): "ok" or "degraded: <condition> since <time>"
    since: float  # Unix time the condition began; 0 when ok


Request = Open | Want | Bad | Stats | Health
Reply = Entry | Error | Have | Failed | StatsReply | HealthReply


# -- encoding -------------------------------------------------------------------


def encode(message: Request | Reply) -> bytes:
    """One message as one line (compact JSON, ASCII, newline-terminated)."""
    body: dict[str, Any]
    match message:
        case Open(key, check):
            body = {"op": "open", "key": key, "check": check}
        case Want(first, last):
            body = {"op": "want", "first": first, "last": last}
        case Bad(block):
            body = {"op": "bad", "block": block}
        case Stats():
            body = {"op": "stats"}
        case Health():
            body = {"op": "health"}
        case HealthReply(state, since):
            body = {"op": "health", "state": state, "since": since}
        case Entry(meta):
            body = {"op": "entry", "meta": meta}
        case Error(kind, detail, retry_after):
            body = {"op": "error", "kind": kind, "detail": detail, "retry_after": retry_after}
        case Have(block):
            body = {"op": "have", "block": block}
        case Failed(block, kind, detail, retry_after):
            body = {
                "op": "failed",
                "block": block,
                "kind": kind,
                "detail": detail,
                "retry_after": retry_after,
            }
        case StatsReply(stats):
            body = {"op": "stats", "stats": stats}
        case _:
            raise TypeError(f"not a filler message: {message!r}")
    line = json.dumps(body, separators=(",", ":")).encode("ascii") + b"\n"
    if len(line) > MAX_LINE:
        raise BadMessage(f"message of {len(line)} bytes is over the {MAX_LINE}-byte limit")
    return line


# -- decoding -------------------------------------------------------------------


def decode_request(line: bytes) -> Request:
    """A worker's message, as the filler reads it."""
    body = _load(line)
    op = body.get("op")
    if op == "open":
        key = _text(body, "key")
        if not key or len(key) > MAX_KEY:
            raise BadMessage("open: key must be 1 to 4096 characters")
        check = body.get("check", False)
        if not isinstance(check, bool):
            raise BadMessage("open: check must be true or false")
        return Open(key, check)
    if op == "want":
        first, last = _block(body, "first"), _block(body, "last")
        if last < first:
            raise BadMessage(f"want: last {last} is before first {first}")
        return Want(first, last)
    if op == "bad":
        return Bad(_block(body, "block"))
    if op == "stats":
        return Stats()
    if op == "health":
        return Health()
    raise BadMessage(f"unknown request {op!r}")


def decode_reply(line: bytes) -> Reply:
    """The filler's message, as a worker reads it."""
    body = _load(line)
    op = body.get("op")
    if op == "have":
        return Have(_block(body, "block"))
    if op == "failed":
        return Failed(_block(body, "block"), _kind(body), _text(body, "detail"), _retry_after(body))
    if op == "entry":
        meta = body.get("meta")
        if not isinstance(meta, dict):
            raise BadMessage("entry: meta must be an object")
        return Entry(meta)
    if op == "error":
        return Error(_kind(body), _text(body, "detail"), _retry_after(body))
    if op == "stats":
        stats = body.get("stats")
        if not isinstance(stats, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in stats.values()
        ):
            raise BadMessage("stats: must map names to numbers")
        return StatsReply(stats)
    if op == "health":
        since = body.get("since")
        if isinstance(since, bool) or not isinstance(since, int | float) or since < 0:
            raise BadMessage("health: since must be a time")
        return HealthReply(_text(body, "state"), since)
    raise BadMessage(f"unknown reply {op!r}")


def _load(line: bytes) -> dict[str, Any]:
    if len(line) > MAX_LINE:
        raise BadMessage(f"line of {len(line)} bytes is over the {MAX_LINE}-byte limit")
    try:
        body = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadMessage(f"not JSON: {exc}") from None
    except RecursionError:
        raise BadMessage("not JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise BadMessage("a message is a JSON object")
    return body


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise BadMessage(f"{body.get('op')}: {name} must be a string")
    return value


def _block(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_BLOCK:
        raise BadMessage(f"{body.get('op')}: {name} must be a block number")
    return value


def _retry_after(body: dict[str, Any]) -> int:
    value = body.get("retry_after", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadMessage(f"{body.get('op')}: retry_after must be a whole number of seconds")
    return value


def _kind(body: dict[str, Any]) -> str:
    kind = _text(body, "kind")
    # An unknown kind (a newer filler) is still a failure: it reads as Unavailable.
    return kind if kind in _KINDS else Unavailable.__name__


# -- errors <-> kinds -------------------------------------------------------------

_KINDS: dict[str, type[StoreError]] = {
    cls.__name__: cls
    for cls in (
        NotFound, AccessDenied, PreconditionFailed, Throttled, Truncated, Unavailable,
        CacheDeclined,
    )
}  # fmt: skip


def error_kind(exc: StoreError) -> tuple[str, int]:
    """The kind to send for a store error, and its retry_after (0 unless Throttled)."""
    for cls in type(exc).__mro__:
        if cls.__name__ in _KINDS and _KINDS[cls.__name__] is cls:
            return cls.__name__, exc.retry_after if isinstance(exc, Throttled) else 0
    return Unavailable.__name__, 0


def store_error(kind: str, detail: str, retry_after: int = 0) -> StoreError:
    """The StoreError a worker raises for a kind the filler sent."""
    cls = _KINDS.get(kind, Unavailable)
    if cls is Throttled:
        return Throttled(detail, max(1, retry_after))
    return cls(detail)


def error_reply(exc: StoreError) -> Error:
    kind, retry_after = error_kind(exc)
    return Error(kind, exc.detail, retry_after)


def failed_reply(block: int, exc: StoreError) -> Failed:
    kind, retry_after = error_kind(exc)
    return Failed(block, kind, exc.detail, retry_after)
