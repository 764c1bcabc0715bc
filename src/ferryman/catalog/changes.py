"""What a committed write or delete tells the other servers of a fleet (pure).

With a PostgreSQL catalog, each `record` and `mark_deleted` sends one
notification per changed store on the channel CHANNEL, in the transaction
that records the change, so it is delivered when (and only if) it commits
(decisions/0036). A server's cache filler listens and drops its copy of the
key (cache/notices.py).

A payload is ASCII JSON (non-ASCII escaped, so its length in bytes is the
same in any server encoding) and shorter than PostgreSQL's 8000 bytes:

    {"v": 1, "o": ORIGIN, "s": STORE, "k": KEY}     one key of one store changed
    {"v": 1, "o": ORIGIN, "s": STORE, "all": true}  a key too long to name: the
                                                    listener treats every cached
                                                    key of STORE as changed

ORIGIN names the server that wrote (its own notifications are skipped); ""
for a command. STORE is the store's canonical name as the catalog's copies
name it (`s3://bucket/prefix`), or "" when the change named no store: every
listener takes that one as its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from ferryman.catalog.copies import CopyEvent

CHANNEL = "ferryman_changes"
MAX_PAYLOAD = 7999  # bytes: PostgreSQL refuses a payload of 8000 or more
VERSION = 1
# The copy events that change what a store serves.
CHANGING = frozenset({"written", "deleted", "repaired"})


@dataclass(frozen=True, slots=True)
class Notice:
    """One decoded notification: `key` changed in `store` (every key when `key` is None)."""

    origin: str
    store: str
    key: str | None

    def concerns(self, store: str) -> bool:
        """Whether a server serving `store` must act on it ("" names every store)."""
        return self.store in ("", store)


def changed_stores(copies: Iterable[CopyEvent]) -> list[str]:
    """The stores whose copy a change touched, in order, once each; [""] if it named none."""
    stores = list(dict.fromkeys(e.store for e in copies if e.event in CHANGING))
    return stores or [""]


def encode(origin: str, store: str, key: str) -> str:
    """The payload saying `key` of `store` changed; the every-key form when it would not fit."""
    text = _dump({"v": VERSION, "o": origin, "s": store, "k": key})
    if len(text) <= MAX_PAYLOAD:
        return text
    text = _dump({"v": VERSION, "o": origin, "s": store, "all": True})
    if len(text) <= MAX_PAYLOAD:
        return text
    # A store name this long (no bucket URL is) cannot be named either: every store.
    return _dump({"v": VERSION, "o": origin[:64], "s": "", "all": True})


def decode(payload: str) -> Notice | None:
    """The notice in `payload`; None for anything else on the channel (a newer version,
    another program's message): the listener ignores it."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("v") != VERSION:
        return None
    origin, store, key = data.get("o"), data.get("s"), data.get("k")
    if not isinstance(origin, str) or not isinstance(store, str):
        return None
    if data.get("all") is True:
        return Notice(origin, store, None)
    if not isinstance(key, str):
        return None
    return Notice(origin, store, key)


def _dump(value: dict[str, object]) -> str:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))
