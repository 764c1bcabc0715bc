"""From a request path to segments under the root: decoded once, normalised, confined.

Percent-decoding happens exactly once, here, on the whole path; the result is
split on "/" and dot segments are resolved (RFC 3986 5.2.4) so an encoded
separator or `%2e%2e` gets no second chance to mean something else. A path
that climbs above the root is refused with 400, as nginx does; NUL is refused
with 400; a segment starting with "." (dotfiles, the state directory) is 404.
Backslashes are ordinary filename characters on POSIX and get no meaning.

Lengths are counted in bytes of the resolved path, after decoding: a segment
longer than --max-name-bytes is 400, a path ("/a/b", from its leading slash)
longer than --max-path-bytes is 414, for reads and writes alike. Both are held
to what the source can store (`configure_limits`), so a name the source could never
hold is refused here instead of failing in the file system or the store.
"""

from __future__ import annotations

import os
from typing import Final
from urllib.parse import quote, unquote_to_bytes

from ferryman.config import Config
from ferryman.errors import HttpError, not_found
from ferryman.stores.s3source import parse_source

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

NAME_MAX: Final = 255  # Linux: the longest name most file systems hold (ext4, xfs, btrfs, tmpfs)
PATH_MAX: Final = 4096  # Linux: the longest path a system call takes, its final NUL included
S3_KEY_MAX: Final = 1024  # S3: the longest object key, in UTF-8 bytes, the prefix included


class _Limits:
    __slots__ = ("name", "path")

    def __init__(self) -> None:
        self.name = NAME_MAX
        self.path = PATH_MAX


_limits = _Limits()


def configure_limits(config: Config) -> None:
    """This process's limits: --max-name-bytes and --max-path-bytes, each held to what
    the source can store. A directory: its file system's longest name (statvfs), and
    paths whose absolute form (root + path + NUL) fits PATH_MAX, since every file
    served is confined by reading that form back (root.py). A store: keys
    (prefix + "/" + path) that fit S3's 1024 bytes.
    """
    name, path = config.max_name_bytes, config.max_path_bytes
    if config.is_remote:
        _, prefix = parse_source(config.source)
        room = S3_KEY_MAX - (len(prefix.encode("utf-8")) + 1 if prefix else 0)
        path = min(path, room + 1)  # + 1: a path counts its leading "/", a key does not
    else:
        try:
            longest = os.statvfs(config.root).f_namemax or NAME_MAX
        except OSError:
            longest = NAME_MAX
        name = min(name, longest)
        path = min(path, PATH_MAX - 1 - len(os.fsencode(config.root)))
    set_limits(name, path)


def set_limits(max_name_bytes: int, max_path_bytes: int) -> None:
    """Set the limits resolve() applies; the paths it remembered are forgotten."""
    _limits.name, _limits.path = max_name_bytes, max_path_bytes
    _resolved.clear()


def limits() -> tuple[int, int]:
    """(longest segment, longest path) in bytes, as resolve() applies them."""
    return _limits.name, _limits.path


def resolve(raw_path: bytes) -> RequestPath:
    """The request path resolved; 400 or 404 for paths that may never be served."""
    path = resolve_servable(raw_path)
    if path is None:
        raise not_found()
    return path


def resolve_servable(raw_path: bytes) -> RequestPath | None:
    """resolve(), with a path through a dot-name (a 404, never served) as None instead of
    an exception: the Root answers it as it answers any other miss (decisions/0038)."""
    # Resolving is pure and costs a few microseconds per request: kept by raw path,
    # and so is a dot-name's refusal (bots ask for /.env again and again).
    path = _resolved.get(raw_path)
    if path is None:
        path = _resolve(raw_path)
        if len(raw_path) <= _MEMO_LONGEST:
            if len(_resolved) >= _MEMO_MAX:
                _resolved.clear()
            _resolved[raw_path] = path
    return None if path is _DOT_NAME else path


# What the memo keeps for a path through a dot-name: no path at all.
_DOT_NAME: Final = RequestPath((".",), False)


def _resolve(raw_path: bytes) -> RequestPath:
    """The resolved path, _DOT_NAME for one through a dot-name; 400 or 414 raised."""
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
            return _DOT_NAME
    # Resolving only drops bytes: a short path needs no counting.
    if len(decoded) > _limits.name or len(decoded) >= _limits.path:
        _check_lengths(segments)
    return RequestPath(tuple(segments), decoded.endswith(b"/"))


def _check_lengths(segments: list[str]) -> None:
    sizes = [len(os.fsencode(segment)) for segment in segments]
    if sum(sizes) + len(sizes) > _limits.path:
        raise HttpError(414, "uri_too_long", f"the path is longer than {_limits.path} bytes")
    if sizes and max(sizes) > _limits.name:
        raise HttpError(400, "bad_path", f"a path segment is longer than {_limits.name} bytes")
