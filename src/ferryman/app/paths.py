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
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

from ferryman.errors import HttpError


@dataclass(frozen=True, slots=True)
class RequestPath:
    segments: tuple[str, ...]  # decoded names, none of them "", "." or ".."
    trailing_slash: bool

    @property
    def relative(self) -> str:
        """The path relative to the root, for os.open(..., dir_fd=root)."""
        return "/".join(self.segments) or "."

    def url(self, *, slash: bool | None = None) -> str:
        """The canonical, re-encoded URL path (never starts with '//')."""
        slash = self.trailing_slash if slash is None else slash
        body = "/".join(quote(os.fsencode(s), safe="") for s in self.segments)
        return "/" + body + ("/" if slash and body else "")


def resolve(raw_path: bytes) -> RequestPath:
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
            raise HttpError(404, "not_found", "no such file")
    return RequestPath(tuple(segments), decoded.endswith(b"/"))
