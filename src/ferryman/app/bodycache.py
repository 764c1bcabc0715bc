"""Small 200 answers kept in memory, each revalidated by its source on every use.

A hit skips everything between the request path and the bytes: for a local
file, path resolution, open, fstat, the /proc confinement check, the read and
the close; for a member of a .tar, those of its archive, the index and the
member's lookup; for a cached object, the key, the cache entry's lookup and
lock.
Its headers are kept already encoded, with the representation they came
from. Entries are made only for the 200s of plain GETs and HEADs that passed
every check of the full path. A GET or HEAD without Range, If-Range,
If-Match and If-Unmodified-Since may use them: a revalidation
(If-None-Match, If-Modified-Since) is decided here by the same
`evaluate_preconditions` the full path runs, against the kept validators,
and answered with the kept 304 or 200. Anything else takes the full path,
which owns the Range logic and the guards of a write.

Every entry carries `current`, the check that it still describes what the
full path would serve now. nginx's open_file_cache trusts an entry for a
fixed time; here a changed file or object version is never served stale:

- a local file: its path still reaches the same file by the same
  directories (`openfiles.still_reached`: identity and route). A rename of
  the file or of a directory above it changes a ctime, so a file moved out
  of the root and reached again through a symlink is not served from memory;
- a member of a .tar: the same check of its archive (app/archive.py): a
  member's bytes change only with the archive's identity;
- a cached object: the cache entry is still the one this worker holds
  in use, and its version was confirmed recently (cache/client.py).

A compressible file's answers vary with Accept-Encoding (app/compression.py):
only its identity answer to a request without Accept-Encoding is kept
(`varies`), and only such a request is answered with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ferryman.app.fileat import Identity
from ferryman.app.openfiles import Route, still_reached
from ferryman.app.plan import Representation
from ferryman.http.body import Body
from ferryman.http.conditional import Outcome, evaluate_preconditions
from ferryman.http.parser import Request
from ferryman.http.response import Response

# Headers that make a request ask for more than "the current representation".
_NEEDS_FULL_PATH = frozenset(
    ("range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "if-range")
)
# What a kept answer cannot decide: a part of it, or a write's guard.
_NEEDS_FULL_PATH_FOR_A_HIT = frozenset(("range", "if-match", "if-unmodified-since", "if-range"))


def same_file(root_fd: int, relative: str, known: Identity, way: Route) -> Callable[[], bool]:
    """The check of an answer made from the file `relative` was seen to reach."""
    return lambda: still_reached(root_fd, relative, known, way)


@dataclass(slots=True)
class Entry:
    """A kept answer: `rep` gives its 200 headers (`whole`, encoded in `head_block`), its
    validators and its 304; a compressible one (`rep.vary`) answers only requests
    without Accept-Encoding."""

    current: Callable[[], bool]
    rep: Representation
    head_block: bytes
    body: bytes


class SmallBodyCache:
    """Bounded by entry count and bytes; the oldest entry goes first."""

    def __init__(self, max_entries: int = 2048, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: dict[bytes, Entry] = {}
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def applies_to(method: str, headers: dict[str, str]) -> bool:
        return (method == "GET" or method == "HEAD") and _NEEDS_FULL_PATH.isdisjoint(headers)

    def response(self, request: Request) -> Response | None:
        """A 200 or 304 from memory for a GET or HEAD of a kept path (a plain one, or a
        revalidation), else None (take the full path)."""
        method, headers = request.method, request.headers
        if method != "GET" and method != "HEAD":
            return None
        if not _NEEDS_FULL_PATH_FOR_A_HIT.isdisjoint(headers):
            return None
        entry = self._entries.get(request.path)
        if entry is None or (entry.rep.vary and "accept-encoding" in headers):
            self.misses += 1
            return None
        if not entry.current():
            self._drop(request.path)
            self.misses += 1
            return None
        self.hits += 1
        rep = entry.rep
        if_none_match = headers.get("if-none-match")
        if_modified_since = headers.get("if-modified-since")
        if (if_none_match is not None or if_modified_since is not None) and (
            evaluate_preconditions(
                method,
                if_match=None,
                if_none_match=if_none_match,
                if_modified_since=if_modified_since,
                if_unmodified_since=None,
                validators=rep.validators,
            )
            is Outcome.NOT_MODIFIED
        ):
            return rep.not_modified()
        return Response(200, rep.whole, Body((entry.body,)), entry.head_block)

    def store(self, request: Request, current: Callable[[], bool], rep: Representation,
              body: bytes) -> None:  # fmt: skip
        """Keep the 200 of `rep` the full path just made for `request` (only a plain GET
        or HEAD's: another request's answer describes something else). A compressible
        file's (`rep.vary`) only for a request without Accept-Encoding: it is the answer
        to such requests only."""
        if not self.applies_to(request.method, request.headers) or len(body) > self.max_bytes // 16:
            return
        if rep.vary and "accept-encoding" in request.headers:
            return
        head_block = rep.whole_block()
        if head_block is None:
            return  # a value frame_head refuses: the full path answers (and refuses) it
        raw_path = request.path
        self._drop(raw_path)
        while self._entries and (
            len(self._entries) >= self.max_entries or self._bytes + len(body) > self.max_bytes
        ):
            self._drop(next(iter(self._entries)))
        self._entries[raw_path] = Entry(current, rep, head_block, body)
        self._bytes += len(body)

    def _drop(self, raw_path: bytes) -> None:
        entry = self._entries.pop(raw_path, None)
        if entry is not None:
            self._bytes -= len(entry.body)
