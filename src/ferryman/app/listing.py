"""Directory listings: the browse page for browsers, JSON for `Accept: application/json`.

One listing page per request, in the view the query asks for (app/listview.py:
`?sort=`, `&order=`, `&page=`, `&q=`); both forms page alike, `--listing-page-size`
entries to a page (JSON: `next` and `prev` are URLs or null).

Reading a directory can take many syscalls on a cold disk, so a local
directory is read, ordered and its page rendered in one worker-thread call;
the page made is kept for a moment (app/listingcache.py), so a flood of
requests for one page builds it about once a second. A name sort (the default)
needs no stat() of a plain file, so only the files on the page shown are
stat()ed; a sort by size or time stats them all. Dotfiles and the state
directory are never listed.

Both forms are valid UTF-8 whatever the names on disk. A name is kept as
os.fsdecode made it (bytes that are not UTF-8 as surrogate escapes); it is
shown with U+FFFD in place of those bytes, and linked by its raw bytes,
percent-encoded, so the link fetches that very file. In JSON every entry
carries that link as `href`, relative to the listing's URL (as in HTML), or,
on a private server with a signing key, the signed absolute URL (app/browse.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import quote

from ferryman.app.browse import Browse, Links
from ferryman.app.browseassets import CONTENT_SECURITY_POLICY
from ferryman.app.browsepage import render_page
from ferryman.app.listingcache import ListingCache, PageKey, directory_version
from ferryman.app.listview import Page, View, matches, page_of, parse_view, sort_entries
from ferryman.http.body import Body
from ferryman.http.dates import format_http_date
from ferryman.http.parser import Request
from ferryman.http.response import Response

if TYPE_CHECKING:
    from ferryman.app.paths import RequestPath
    from ferryman.app.root import Root

Cleanup = Callable[[], None]
UNKNOWN = -1  # size and mtime of a file not stat()ed yet (a name sort stats only its page)


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    is_dir: bool
    size: int
    mtime: int


@dataclass(frozen=True, slots=True)
class Selection:
    """What one page shows: its entries, and the counts it reports."""

    entries: list[Entry]  # this page's, in order
    page: Page
    directories: int  # of the entries that match the view's q
    files: int
    listed: int  # every entry of the listing, before q
    truncated: bool = False  # the source listed only the first `listed`


def read_entries(fd: int, relative: str, root: Root, *, details: bool = True) -> list[Entry]:
    """Visible entries of the open directory `fd` (at `relative` under the root).

    Without `details`, plain files (not symlinks) are not stat()ed: their size
    and mtime are UNKNOWN, for `with_details` to fill in for the page shown.
    """
    directory = os.path.normpath(os.path.join(root.path, relative))
    entries = []
    with os.scandir(fd) as scan:
        for item in scan:
            if item.name.startswith("."):
                continue
            # Only entries a request would be served: no state directory, no
            # symlink out of the root (unless followed), none into a dotfile.
            linked = item.is_symlink() or item.is_dir(follow_symlinks=False)
            if linked and not root.is_servable(os.path.realpath(f"{directory}/{item.name}")):
                continue
            if not (details or linked):
                entries.append(Entry(item.name, False, UNKNOWN, UNKNOWN))
                continue
            try:
                st = os.stat(item.name, dir_fd=fd)
            except OSError:  # dangling symlink or vanished: list nothing for it
                continue
            entries.append(_entry(item.name, st))
    return entries


def _entry(name: str, st: os.stat_result) -> Entry:
    is_dir = stat.S_ISDIR(st.st_mode)
    return Entry(name, is_dir, 0 if is_dir else st.st_size, int(st.st_mtime))


def with_details(fd: int, entries: list[Entry]) -> list[Entry]:
    """`entries` with every UNKNOWN size and mtime read; a file gone since is left out."""
    complete = []
    for entry in entries:
        if entry.size != UNKNOWN:
            complete.append(entry)
            continue
        try:
            complete.append(_entry(entry.name, os.stat(entry.name, dir_fd=fd)))
        except OSError:
            continue
    return complete


def select(entries: list[Entry], view: View, page_size: int, truncated: bool = False) -> Selection:
    """The page of `entries` the view asks for: those matching q, ordered, then sliced.
    404 for a page past the last."""
    listed = len(entries)
    if view.q:
        entries = [e for e in entries if matches(shown_name(e.name), view.q)]
    directories = sum(1 for e in entries if e.is_dir)
    page = page_of(view, page_size, len(entries))
    ordered = sort_entries(entries, view)
    shown = ordered[page.start : page.end]
    return Selection(shown, page, directories, len(entries) - directories, listed, truncated)


def shown_name(name: str) -> str:
    """The name as text: bytes that are not UTF-8 become U+FFFD."""
    return os.fsencode(name).decode("utf-8", "replace")


def href(entry: Entry) -> str:
    """The entry's link relative to its listing: the raw name, percent-encoded."""
    return quote(os.fsencode(entry.name), safe="") + ("/" if entry.is_dir else "")


def render_html(
    path: RequestPath,
    selection: Selection,
    view: View,
    links: Links,
    *,
    uploads: bool = False,
    host: str = "",
) -> bytes:
    rows = [(e, shown_name(e.name), links.entry(href(e))) for e in selection.entries]
    shown = [shown_name(s) for s in path.segments]
    return render_page(
        path.segments, shown, rows, selection, view, links, uploads=uploads, host=host
    )


def render_json(url_path: str, selection: Selection, view: View, links: Links) -> bytes:
    page = selection.page
    doc: dict[str, object] = {
        "path": url_path,
        "page": page.number,
        "pages": page.count,
        "total": page.total,
        "next": links.absolute_view(view.query(page=page.number + 1)) if page.has_next else None,
        "prev": links.absolute_view(view.query(page=page.number - 1)) if page.has_prev else None,
        "entries": [
            {
                "name": shown_name(e.name),
                "href": links.entry(href(e)),
                "type": "directory" if e.is_dir else "file",
                "size": e.size,
                "modified": format_http_date(e.mtime) if e.mtime > 0 else None,
            }
            for e in selection.entries
        ],
    }
    if selection.truncated:
        doc["truncated"] = True
    return json.dumps(doc, ensure_ascii=False).encode("utf-8") + b"\n"


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "").lower()


RENDER_INLINE = 2000  # entries ordered and rendered on the event loop; more in a thread


async def respond(
    request: Request,
    path: RequestPath,
    fd: int,
    root: Root,
    browse: Browse,
    cache_control: str | None,
    pages: ListingCache | None = None,
) -> Response:
    """The listing page of the open directory `fd` (of `root`) the request asks for;
    closes `fd`. With `pages`, a page made less than a moment ago for the same
    request and the same directory is answered again (app/listingcache.py)."""
    try:
        view = parse_view(request.query)  # a bad query reads nothing
        page = Paged(request, path, view, browse)
        key = None
        if pages is not None and pages.enabled and not page.links.signed:
            key = page.key(os.fstat(fd))
            kept = pages.get(key)
            if kept is not None:
                return page.response(kept, cache_control)

        def build() -> bytes:
            entries = read_entries(fd, path.relative, root, details=view.sort != "name")
            selection = select(entries, view, browse.page_size)
            return page.payload(replace(selection, entries=with_details(fd, selection.entries)))

        payload = await asyncio.to_thread(build)
        if key is not None and pages is not None:
            pages.put(key, payload)
    finally:
        os.close(fd)
    return page.response(payload, cache_control)


async def render(
    request: Request,
    path: RequestPath,
    entries: list[Entry],
    browse: Browse,
    cache_control: str | None,
    truncated: bool = False,
) -> Response:
    """The listing page of `entries` the request asks for: JSON or HTML, as the client
    asks. For archives and store prefixes; a long listing is ordered and rendered in a
    worker thread."""
    view = parse_view(request.query)
    page = Paged(request, path, view, browse)

    def build() -> bytes:
        return page.payload(select(entries, view, browse.page_size, truncated))

    payload = build() if len(entries) <= RENDER_INLINE else await asyncio.to_thread(build)
    return page.response(payload, cache_control)


class Paged:
    """One listing answer being made: the form the client asked for, and its links."""

    def __init__(self, request: Request, path: RequestPath, view: View, browse: Browse) -> None:
        self.path = path
        self.view = view
        self.url_path = path.url(slash=True) if path.segments else "/"
        self.links = browse.links(request, self.url_path, int(time.time()))
        self.as_json = wants_json(request)
        self.uploads = browse.uploads
        self.host = request.headers.get("host", "")  # checked by the parser; shown escaped
        self.query = request.query

    def key(self, directory: os.stat_result) -> PageKey:
        """Everything this page is made of: the directory as it is, and the request."""
        return (directory_version(directory), self.url_path, self.query, self.as_json, self.host)

    def payload(self, selection: Selection) -> bytes:
        if self.as_json:
            return render_json(self.url_path, selection, self.view, self.links)
        return render_html(
            self.path, selection, self.view, self.links, uploads=self.uploads, host=self.host
        )

    def response(self, payload: bytes, cache_control: str | None) -> Response:
        if self.as_json:
            headers = [("Content-Type", "application/json")]
        else:
            headers = [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
                ("X-Content-Type-Options", "nosniff"),
            ]
        headers.append(("Vary", "Accept"))
        if self.links.signed:
            headers.append(("Cache-Control", "private, no-store"))  # its links are credentials
        elif cache_control:
            headers.append(("Cache-Control", cache_control))
        return Response(200, headers, Body((payload,)))
