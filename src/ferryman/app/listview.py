"""What one listing page shows: the view a query asks for, the order, the page (pure).

A listing's URL says how it is seen: `?sort=name|size|modified`,
`&order=asc|desc`, `&page=N` (from 1) and `&q=TEXT` (a case-insensitive
substring of the name). Anything else in the query (a signed URL's
parameters, a cache buster) is left alone; a value ferryman does not know
is `400`, and a page past the last is `404`, before anything is read.

The order is total, so every page of a listing is the same whatever order
the source gave the entries in: directories first, then by the sort key,
ties (and names) in natural, case-insensitive order ("file 9" before
"file 10"), and the exact name last. Descending reverses each group;
directories still come first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar
from urllib.parse import parse_qsl, quote

from ferryman.errors import HttpError, not_found

SORTS = ("name", "size", "modified")
ORDERS = ("asc", "desc")
MAX_PAGE = 10**9  # larger page numbers are refused, not converted
_DIGITS = re.compile(r"\d+")


class Listed(Protocol):
    """What the order needs of an entry (listing.Entry)."""

    @property
    def name(self) -> str: ...
    @property
    def is_dir(self) -> bool: ...
    @property
    def size(self) -> int: ...
    @property
    def mtime(self) -> int: ...


E = TypeVar("E", bound=Listed)


@dataclass(frozen=True, slots=True)
class View:
    sort: str = "name"
    order: str = "asc"
    page: int = 1
    q: str = ""

    @property
    def descending(self) -> bool:
        return self.order == "desc"

    def query(self, **changes: object) -> str:
        """This view (with `changes`) as a query string without "?": only what differs
        from the defaults, in one order, so each view has one URL."""
        view = replace(self, **changes)  # type: ignore[arg-type]
        pairs = []
        if view.sort != "name" or view.order != "asc":
            pairs += [("sort", view.sort), ("order", view.order)]
        if view.q:
            pairs.append(("q", view.q))
        if view.page != 1:
            pairs.append(("page", str(view.page)))
        return "&".join(f"{name}={quote(value, safe='')}" for name, value in pairs)

    def toggled(self, sort: str) -> View:
        """The view a column heading links to: that column, the other order if it is the
        one shown (else ascending, newest or largest first being one click away), page 1."""
        order = ("desc" if self.order == "asc" else "asc") if sort == self.sort else "asc"
        return replace(self, sort=sort, order=order, page=1)


def parse_view(raw_query: bytes) -> View:
    """The view a listing's raw query asks for; 400 for a value ferryman does not know."""
    if not raw_query:
        return View()
    found: dict[str, str] = {}
    text = raw_query.decode("utf-8", "replace")
    for name, value in parse_qsl(text, keep_blank_values=True, errors="replace"):
        if name in ("sort", "order", "page", "q"):
            found[name] = value  # the last one counts
    sort = found.get("sort", "name") or "name"
    if sort not in SORTS:
        raise HttpError(400, "bad_query", f"sort must be one of {', '.join(SORTS)}")
    order = found.get("order", "asc") or "asc"
    if order not in ORDERS:
        raise HttpError(400, "bad_query", "order must be asc or desc")
    page_text = found.get("page", "1") or "1"
    if not (page_text.isascii() and page_text.isdigit()) or len(page_text) > 10:
        raise HttpError(400, "bad_query", "page must be a number from 1")
    page = int(page_text)
    if not 1 <= page <= MAX_PAGE:
        raise HttpError(400, "bad_query", "page must be a number from 1")
    return View(sort, order, page, found.get("q", ""))


def natural_key(name: str) -> str:
    """A case-insensitive key in which runs of digits compare as numbers.

    Each run becomes NUL, one character counting its digits (leading zeros
    dropped) and the digits, so "9" < "10" by length first; a plain string
    compares in C, many times faster than a tuple of parts.
    """
    folded = name.casefold()
    if _DIGITS.search(folded) is None:
        return folded
    return _DIGITS.sub(_number, folded)


def _number(match: re.Match[str]) -> str:
    digits = match.group().lstrip("0")
    return "\x00" + chr(len(digits) + 1) + digits


def matches(name: str, q: str) -> bool:
    """`?q=`: a case-insensitive substring of the shown name."""
    return q.casefold() in name.casefold()


def sort_entries(entries: Sequence[E], view: View) -> list[E]:
    """Directories first; within each group by the view's key, then natural name, then
    the exact name; descending reverses each group."""
    key: Callable[[E], tuple[int, str, str]]
    if view.sort == "size":
        key = lambda e: (e.size, natural_key(e.name), e.name)  # noqa: E731
    elif view.sort == "modified":
        key = lambda e: (e.mtime, natural_key(e.name), e.name)  # noqa: E731
    else:
        key = lambda e: (0, natural_key(e.name), e.name)  # noqa: E731
    directories = sorted((e for e in entries if e.is_dir), key=key, reverse=view.descending)
    files = sorted((e for e in entries if not e.is_dir), key=key, reverse=view.descending)
    return directories + files


@dataclass(frozen=True, slots=True)
class Page:
    """Page `number` (from 1) of `total` entries, `size` to a page."""

    number: int
    size: int
    total: int

    @property
    def count(self) -> int:
        """How many pages: at least one (an empty listing is one empty page)."""
        return max(1, -(-self.total // self.size))

    @property
    def start(self) -> int:
        return (self.number - 1) * self.size

    @property
    def end(self) -> int:
        return min(self.start + self.size, self.total)

    @property
    def has_prev(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.count


def page_of(view: View, size: int, total: int) -> Page:
    """The page the view asks for; 404 when the listing has fewer pages."""
    page = Page(view.page, size, total)
    if view.page > page.count:
        raise not_found(f"page {view.page} of a listing of {page.count}")
    return page
