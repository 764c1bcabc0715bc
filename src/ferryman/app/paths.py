"""From a request path to segments under the root: decoded once, normalised, confined.

Percent-decoding happens exactly once, here, on the whole path; the result is
split on "/" and dot segments are resolved (RFC 3986 5.2.4) so an encoded
separator or `%2e%2e` gets no second chance to mean something else. A path
that climbs above the root is refused with 400, as nginx does; NUL is refused
with 400; a segment starting with "." (dotfiles, the state directory) is 404.
Backslashes are ordinary filename characters on POSIX and get no meaning.
"""

from __future__ import annotations

import os
from typing import Final
from urllib.parse import quote, unquote_to_bytes

from ferryman.errors import HttpError, not_found

_MEMO_MAX: Final = 4096  # resolved paths kept; the table is emptied when full
# Only paths up to this long are kept: the table then holds at most a few MiB,
# not 4,096 request lines of --max-request-line (8 KiB) each.
_MEMO_LONGEST: Final = 512


class RequestPath:
    """A resolved request path; immutable, so one instance serves every request for it."""

    __slots__ = ("relative", "segments", "trailing_slash")

    def __init__(self, segments: tuple[str, ...], trailing_slash: bool) -> None:
        self.segments = segments  # decoded names, none of them "", "." or ".."
        self.trailing_slash = trailing_slash
        # The path relative to the root, for os.open(..., dir_fd=root).
        self.relative = "/".join(segments) or "."

    def __repr__(self) -> str:
        return f"RequestPath({self.segments!r}, trailing_slash={self.trailing_slash})"

    def url(self, *, slash: bool | None = None) -> str:
        """The canonical, re-encoded URL path (never starts with '//')."""
        slash = self.trailing_slash if slash is None else slash
        body = "/".join(quote(os.fsencode(s), safe="") for s in self.segments)
        return "/" + body + ("/" if slash and body else "")


_resolved: dict[bytes, RequestPath] = {}


def resolve(raw_path: bytes) -> RequestPath:
    """The request path resolved; 400 or 404 for paths that may never be served."""
    # Resolving is pure and costs a few microseconds per request: kept by raw path.
    path = _resolved.get(raw_path)
    if path is None:
        path = _resolve(raw_path)
        if len(raw_path) <= _MEMO_LONGEST:
            if len(_resolved) >= _MEMO_MAX:
                _resolved.clear()
            _resolved[raw_path] = path
    return path


def _resolve(raw_path: bytes) -> RequestPath:
    decoded = unquote_to_bytes(raw_path)
    if b"\x00" in decoded:
        raise HttpError(400, "bad_path", "NUL byte in path")
    segments: list[str] = []
    for part in os.fsdecode(decoded).split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not segments:
                raise HttpError(400, "bad_path", "path climbs above the root")
            segments.pop()
            continue
        segments.append(part)
    for segment in segments:
        if segment.startswith("."):
            raise not_found()
    return RequestPath(tuple(segments), decoded.endswith(b"/"))
