"""Directory listings: HTML for browsers, JSON for `Accept: application/json`.

Reading a directory can take many syscalls on a cold disk, so the entries are
gathered in a worker thread; rendering is pure and tested on its own.
Dotfiles and the state directory are never listed.

Both forms are valid UTF-8 whatever the names on disk. A name is kept as
os.fsdecode made it (bytes that are not UTF-8 as surrogate escapes); it is
shown with U+FFFD in place of those bytes, and linked by its raw bytes,
percent-encoded, so the link fetches that very file. In JSON every entry
carries that link as `href`, relative to the listing's URL (as in HTML).
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from ferryman.http.body import Body
from ferryman.http.dates import format_http_date
from ferryman.http.parser import Request
from ferryman.http.response import Response

if TYPE_CHECKING:
    from ferryman.app.paths import RequestPath
    from ferryman.app.root import Root

Cleanup = Callable[[], None]


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    is_dir: bool
    size: int
    mtime: int


def read_entries(fd: int, relative: str, root: Root) -> list[Entry]:
    """Visible entries of the open directory `fd` (at `relative` under the root)."""
    directory = os.path.normpath(os.path.join(root.path, relative))
    entries = []
    with os.scandir(fd) as scan:
        for item in scan:
            if item.name.startswith("."):
                continue
            path = os.path.join(directory, item.name)
            # Only entries a request would be served: no state directory, no
            # symlink out of the root (unless followed), none into a dotfile.
            linked = item.is_symlink() or item.is_dir(follow_symlinks=False)
            if linked and not root.is_servable(os.path.realpath(path)):
                continue
            try:
                st = os.stat(item.name, dir_fd=fd)
            except OSError:  # dangling symlink or vanished: list nothing for it
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            entries.append(Entry(item.name, is_dir, 0 if is_dir else st.st_size, int(st.st_mtime)))
    return sort_entries(entries)


def sort_entries(entries: list[Entry]) -> list[Entry]:
    """Directories first, then by name (case-insensitive, ties by exact name)."""
    return sorted(entries, key=lambda e: (not e.is_dir, e.name.casefold(), e.name))


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _modified(entry: Entry) -> str:
    """A store's "directories" have no time of their own (mtime 0): shown as '-'."""
    return format_http_date(entry.mtime) if entry.mtime else "-"


def shown_name(name: str) -> str:
    """The name as text: bytes that are not UTF-8 become U+FFFD."""
    return os.fsencode(name).decode("utf-8", "replace")


def href(entry: Entry) -> str:
    """The entry's link relative to its listing: the raw name, percent-encoded."""
    return quote(os.fsencode(entry.name), safe="") + ("/" if entry.is_dir else "")


def render_html(url_path: str, entries: list[Entry], truncated: bool = False) -> bytes:
    title = html.escape(url_path)
    rows = []
    if url_path != "/":
        rows.append('<tr><td><a href="../">../</a></td><td></td><td></td></tr>')
    for e in entries:
        shown = shown_name(e.name) + ("/" if e.is_dir else "")
        size = "-" if e.is_dir else human_size(e.size)
        rows.append(
            f'<tr><td><a href="{html.escape(href(e))}">{html.escape(shown)}</a></td>'
            f'<td class="size" title="{e.size}">{size}</td>'
            f"<td>{_modified(e)}</td></tr>"
        )
    if truncated:
        rows.append(f'<tr><td colspan="3">(only the first {len(entries)} entries)</td></tr>')
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>Index of {title}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{padding:0 1.5em 0 0}"
        ".size{text-align:right}</style></head>\n"
        f"<body><h1>Index of {title}</h1>\n<table>\n"
        "<tr><th>Name</th><th>Size</th><th>Last modified</th></tr>\n"
        + "\n".join(rows)
        + "\n</table></body></html>\n"
    )
    return page.encode("utf-8")


def render_json(url_path: str, entries: list[Entry], truncated: bool = False) -> bytes:
    doc: dict[str, object] = {
        "path": url_path,
        "entries": [
            {
                "name": shown_name(e.name),
                "href": href(e),
                "type": "directory" if e.is_dir else "file",
                "size": e.size,
                "modified": format_http_date(e.mtime) if e.mtime else None,
            }
            for e in entries
        ],
    }
    if truncated:
        doc["truncated"] = True
    return json.dumps(doc, ensure_ascii=False).encode("utf-8") + b"\n"


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "").lower()


RENDER_INLINE = 2000  # entries rendered on the event loop; 100,000 take about half a second


async def respond(
    request: Request, path: RequestPath, fd: int, root: Root, cache_control: str | None
) -> Response:
    """The listing of the open directory `fd` (of `root`); closes it."""
    try:
        entries = await asyncio.to_thread(read_entries, fd, path.relative, root)
    finally:
        os.close(fd)
    return await render(request, path, entries, cache_control)


async def render(
    request: Request,
    path: RequestPath,
    entries: list[Entry],
    cache_control: str | None,
    truncated: bool = False,
) -> Response:
    """The listing response for `entries`, sorted here: JSON or HTML, as the client asks.

    Used for directories, archives and store prefixes alike. A long listing is
    sorted and rendered in a worker thread.
    """
    url_path = path.url(slash=True) if path.segments else "/"
    as_json = wants_json(request)

    def build() -> bytes:
        ordered = sort_entries(entries)
        if as_json:
            return render_json(url_path, ordered, truncated)
        return render_html(url_path, ordered, truncated)

    payload = build() if len(entries) <= RENDER_INLINE else await asyncio.to_thread(build)
    kind = "application/json" if as_json else "text/html; charset=utf-8"
    headers = [("Content-Type", kind), ("Vary", "Accept")]
    if cache_control:
        headers.append(("Cache-Control", cache_control))
    return Response(200, headers, Body((payload,)))
