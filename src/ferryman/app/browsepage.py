"""The browse page: one listing page as HTML, whole without its script.

Breadcrumbs of the decoded path, each a link; the rows of this page
(directories first) with an icon or a lazily loaded thumbnail, a player for
audio and video in a <details> row (HTML alone opens it; the browser asks
for ranges as it plays and seeks), human sizes with the exact bytes as
their title, and times in UTC; column headings that sort (links), the
pages of the listing (links, rel=prev/next), a `?q=` form; with writes
allowed, an upload panel that the script shows.

Every name is hostile: shown through `html.escape` (text and attributes),
linked by its raw bytes percent-encoded (listing.href), so a name can
neither end an attribute nor make markup. The policy (browseassets.py)
would stop a script that got through anyway.
"""

from __future__ import annotations

import html
import os
import re
import time
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import quote

from ferryman.app.browseassets import DIGEST_MAX_BYTES, SCRIPT, SPRITE, STYLE, icon
from ferryman.app.mime import content_type

if TYPE_CHECKING:
    from ferryman.app.browse import Links
    from ferryman.app.listing import Entry, Selection
    from ferryman.app.listview import View

# What a browser shows in <img>, and plays in <video> / <audio>, by Content-Type.
IMAGES = frozenset(
    ("image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/svg+xml",
     "image/bmp", "image/x-icon", "image/vnd.microsoft.icon")
)  # fmt: skip
VIDEOS = frozenset(("video/mp4", "video/webm", "video/ogg"))
AUDIO = frozenset(
    ("audio/mpeg", "audio/ogg", "audio/wav", "audio/x-wav", "audio/flac", "audio/mp4",
     "audio/aac", "audio/webm")
)  # fmt: skip
_ARCHIVES = frozenset(
    ("application/x-tar", "application/gzip", "application/zip", "application/zstd",
     "application/x-bzip2", "application/x-xz", "application/x-7z-compressed",
     "application/vnd.rar")
)  # fmt: skip
HEADINGS = (("name", "Name", "n"), ("size", "Size", "s"), ("modified", "Modified", "m"))


_SPECIAL = re.compile("[&<>\"']")


def esc(text: str) -> str:
    """html.escape, for text and quoted attributes; most names need nothing done."""
    return html.escape(text, quote=True) if _SPECIAL.search(text) else text


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def kind_of(entry: Entry) -> str:
    """The icon of an entry (and how it is previewed): dir, img, vid, aud, arc, txt, file."""
    if entry.is_dir:
        return "dir"
    dot = entry.name.rfind(".")
    return _kind_of_extension(entry.name[dot:].lower() if dot > 0 else "")


@lru_cache(maxsize=256)
def _kind_of_extension(extension: str) -> str:
    kind = content_type("x" + extension).split(";", 1)[0]
    if kind in IMAGES:
        return "img"
    if kind in VIDEOS:
        return "vid"
    if kind in AUDIO:
        return "aud"
    if kind in _ARCHIVES:
        return "arc"
    if kind.startswith("text/") or kind in ("application/json", "application/xml"):
        return "txt"
    return "file"


def crumbs(
    title_segments: Sequence[str], raw_segments: Sequence[str], links: Links, host: str
) -> str:
    """The path as links: the top (named by the Host the browser sent), then each
    directory by its decoded name."""
    top = f"{icon('home')}<span>{esc(host)}</span>" if host else icon("home")
    parts = [f'<a href="{esc(links.above("/"))}" class="top" aria-label="top">{top}</a>']
    path = "/"
    last = len(raw_segments) - 1
    for i, (shown, raw) in enumerate(zip(title_segments, raw_segments, strict=True)):
        path += quote(os.fsencode(raw), safe="") + "/"
        if i == last:
            target, current = links.view(""), ' aria-current="page"'
        else:
            target, current = links.above(path), ""
        parts.append(f'<span class="sep">/</span><a href="{esc(target)}"{current}>{esc(shown)}</a>')
    if not raw_segments:
        parts[0] = parts[0].replace('aria-label="top"', 'aria-label="top" aria-current="page"')
    return '<nav class="crumbs" aria-label="Path">' + "".join(parts) + "</nav>"


def _heading(view: View, sort: str, label: str, css: str, links: Links) -> str:
    target = esc(links.view(view.toggled(sort).query()))
    state = ""
    if view.sort == sort:
        state = f' aria-sort="{"descending" if view.descending else "ascending"}"'
    return f'<th class="{css}"{state}><a href="{target}">{label}</a></th>'


def _row(entry: Entry, shown: str, href: str, stamp: str) -> str:
    kind = kind_of(entry)
    name = esc(shown + ("/" if entry.is_dir else ""))
    link = esc(href)
    if kind == "img":
        lead = f'<img class="thumb" src="{link}" alt="" loading="lazy" decoding="async">'
    else:
        lead = icon(kind)
    preview = ""
    if kind in ("vid", "aud"):
        tag = "video" if kind == "vid" else "audio"
        preview = (
            f'<details class="play"><summary>Play</summary><{tag} controls preload="none" '
            f'src="{link}"></{tag}></details>'
        )
    if entry.is_dir:
        size = '<td class="s">\u2014</td>'
    else:
        size = f'<td class="s" title="{entry.size:,} bytes">{human_size(entry.size)}</td>'
    return (
        f'<tr data-name="{esc(shown)}"><td class="n"><div class="row">{lead}'
        f'<a href="{link}">{name}</a></div>{preview}</td>{size}<td class="m">{stamp}</td></tr>'
    )


@lru_cache(maxsize=4096)
def _stamp(mtime: int) -> str:
    """A time in UTC to the minute, the machine-readable one for the script; '-' for none."""
    if mtime <= 0:
        return "\u2014"
    t = time.gmtime(mtime)
    shown = time.strftime("%Y-%m-%d %H:%M", t)
    return f'<time datetime="{time.strftime("%Y-%m-%dT%H:%M:%SZ", t)}">{shown}</time>'


def _summary(selection: Selection, view: View) -> str:
    page = selection.page
    counted = f"{_count(selection.directories, 'folder')}, {_count(selection.files, 'file')}"
    if view.q:
        counted = f"{page.total:,} of {selection.listed:,} entries match \u201c{esc(view.q)}\u201d"
    if page.count > 1:
        counted += f" \u00b7 page {page.number:,} of {page.count:,}"
        counted += f" ({page.start + 1:,}\u2013{page.end:,})"
    if selection.truncated:
        counted += f" \u00b7 only the first {selection.listed:,} entries are listed"
    return f'<p class="meta" id="summary">{counted}</p>'


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def _pages(selection: Selection, view: View, links: Links) -> tuple[str, str]:
    """The page links (a nav), and the <link>s for the head."""
    page = selection.page
    if page.count == 1:
        return "", ""

    def to(number: int) -> str:
        return esc(links.view(view.query(page=number)))

    head = []
    nav = []
    if page.has_prev:
        head.append(f'<link rel="prev" href="{to(page.number - 1)}">')
        nav.append(f'<a href="{to(1)}">\u00ab First</a>')
        nav.append(f'<a rel="prev" href="{to(page.number - 1)}">\u2039 Previous</a>')
    else:
        nav.append('<span class="off">\u00ab First</span><span class="off">\u2039 Previous</span>')
    nav.append(f"<span>Page {page.number:,} of {page.count:,}</span>")
    if page.has_next:
        head.append(f'<link rel="next" href="{to(page.number + 1)}">')
        nav.append(f'<a rel="next" href="{to(page.number + 1)}">Next \u203a</a>')
        nav.append(f'<a href="{to(page.count)}">Last \u00bb</a>')
    else:
        nav.append('<span class="off">Next \u203a</span><span class="off">Last \u00bb</span>')
    return '<nav class="pages" aria-label="Pages">' + "".join(nav) + "</nav>", "".join(head)


def _find(view: View, links: Links) -> str:
    """The filter box: instant on the rows shown (script), `?q=` over the whole listing."""
    fields = []
    if view.sort != "name" or view.order != "asc":
        fields += [("sort", view.sort), ("order", view.order)]
    fields += links.form_fields()
    hidden = "".join(
        f'<input type="hidden" name="{esc(name)}" value="{esc(value)}">' for name, value in fields
    )
    return (
        f'<form class="find" method="get" action="{esc(links.base)}" role="search">'
        f'<input type="search" id="q" name="q" value="{esc(view.q)}" '
        'placeholder="Filter by name  ( / )" aria-label="Filter by name" autocomplete="off">'
        f'{hidden}<button type="submit">Search all</button>'
        '<span class="meta" id="shown" aria-live="polite"></span></form>'
    )


def _upload(base: str, reload: str) -> str:
    return (
        f'<section id="upload" hidden aria-label="Upload" data-base="{esc(base)}" '
        f'data-digest-max="{DIGEST_MAX_BYTES}"><div class="fields">'
        '<label>Token <input type="password" id="token" autocomplete="off" '
        'spellcheck="false"></label><button type="button" id="forget">Forget token</button>'
        '<label>Upload <input type="file" id="files" multiple></label>'
        '<label><input type="checkbox" id="replace"> Replace existing files</label></div>'
        '<p class="meta" id="drop">Or drop files anywhere on this page. The token stays in '
        "this tab only; each file is sent with its SHA-256, which the server checks.</p>"
        f'<ul id="uploads"></ul><a id="reload" href="{esc(reload)}" hidden>'
        "Reload to see them</a></section>"
    )


def render_page(
    segments: Sequence[str],
    shown_segments: Sequence[str],
    rows: Sequence[tuple[Entry, str, str]],
    selection: Selection,
    view: View,
    links: Links,
    *,
    uploads: bool,
    host: str = "",
) -> bytes:
    """The whole page. `segments`: the listing's path as on disk, and as shown;
    `rows`: this page's entries, each with its name as shown and its link."""
    title = esc("/" + "".join(s + "/" for s in shown_segments))
    nav, head_links = _pages(selection, view, links)
    headings = "".join(_heading(view, sort, label, css, links) for sort, label, css in HEADINGS)
    lines = []
    if segments:
        parent = links.above(links.base.rstrip("/").rsplit("/", 1)[0] + "/")
        lines.append(
            f'<tr class="up"><td class="n"><div class="row">{icon("up")}'
            f'<a href="{esc(parent)}">../</a></div></td><td class="s"></td>'
            '<td class="m"></td></tr>'
        )
    for entry, shown, link in rows:
        lines.append(_row(entry, shown, link, _stamp(entry.mtime)))
    if not rows:
        empty = "Nothing matches." if view.q else "Nothing here."
        lines.append(f'<tr><td class="empty" colspan="3">{empty}</td></tr>')
    upload = _upload(links.base, links.view(view.query())) if uploads else ""
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f'<meta name="referrer" content="no-referrer"><title>Index of {title}</title>'
        f"{head_links}<style>{STYLE}</style></head>\n<body>{SPRITE}\n<header>"
        f"{crumbs(shown_segments, segments, links, host)}{_summary(selection, view)}</header>\n"
        f"{_find(view, links)}{upload}\n"
        f'<table id="entries"><thead><tr>{headings}</tr></thead><tbody>\n'
        + "\n".join(lines)
        + f"\n</tbody></table>\n{nav}<footer>ferryman</footer>"
        f"<script>{SCRIPT}</script></body></html>\n"
    )
    return page.encode("utf-8")
