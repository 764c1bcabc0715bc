"""Listings render valid UTF-8 whatever the names, link each entry by its raw bytes, and
show hostile names as text: never markup, never script."""

from __future__ import annotations

import json
import os
import re
from html import unescape
from html.parser import HTMLParser
from urllib.parse import unquote_to_bytes, urljoin

from hypothesis import given
from hypothesis import strategies as st

from ferryman.app.auth import SigningKey
from ferryman.app.browse import Browse, Links
from ferryman.app.listing import Entry, render_html, render_json, select
from ferryman.app.listview import View
from ferryman.app.paths import RequestPath, resolve
from tests.builders import request as parsed_request

# A name on disk: any bytes but "/" and NUL (what a POSIX file system allows).
raw_name = st.binary(min_size=1, max_size=30).filter(lambda b: b"/" not in b and b"\0" not in b)
HOSTILE = [
    '"><script>alert(1)</script>',
    "<img src=x onerror=alert(1)>.png",
    "' onmouseover='alert(1)",
    "</td></tr></table><h1>big</h1>",
    "&amp;&lt;.txt",
    "javascript:alert(1)",
    "100% #1?.mp4",
]


def entry(raw: bytes, is_dir: bool = False) -> Entry:
    return Entry(os.fsdecode(raw), is_dir, 0 if is_dir else 7, 1_700_000_000)


DEFAULT = View()


def page(entries: list[Entry], view: View = DEFAULT, size: int = 1000) -> tuple[bytes, bytes]:
    """(JSON, HTML) of the listing /x/ of `entries`."""
    path = RequestPath(("x",), True)
    chosen = select(entries, view, size)
    links = Links("/x/")
    return render_json("/x/", chosen, view, links), render_html(path, chosen, view, links)


def entry_links(html_page: str) -> list[str]:
    """The href of each entry's link, in the order of the rows."""
    return [
        unescape(h) for h in re.findall(r'<tr data-name=.*?<a href="([^"]*)">', html_page, re.S)
    ]


def test_a_name_that_is_not_utf8_is_shown_replaced_and_linked_raw() -> None:
    entries = [entry(b"caf\xe9.txt"), entry(b"d\xff\xfe", is_dir=True), entry("é €".encode())]
    as_json, as_html = page(entries)
    doc = json.loads(as_json.decode("utf-8"))  # strict
    assert [(e["name"], e["href"], e["type"]) for e in doc["entries"]] == [
        ("d\ufffd\ufffd", "d%FF%FE/", "directory"),
        ("caf\ufffd.txt", "caf%E9.txt", "file"),
        ("é €", "%C3%A9%20%E2%82%AC", "file"),
    ]
    text = as_html.decode("utf-8")  # strict
    assert '<a href="caf%E9.txt">caf\ufffd.txt</a>' in text
    assert '<a href="d%FF%FE/">d\ufffd\ufffd/</a>' in text


@given(st.lists(st.tuples(raw_name, st.booleans()), max_size=8, unique_by=lambda t: t[0]))
def test_any_names_render_as_utf8_with_links_to_their_bytes(
    names: list[tuple[bytes, bool]],
) -> None:
    entries = [entry(raw, is_dir) for raw, is_dir in names]
    as_json, as_html = page(entries)
    doc = json.loads(as_json.decode("utf-8"))
    links = entry_links(as_html.decode("utf-8"))
    assert len(doc["entries"]) == len(links) == len(entries)
    by_name = dict(names)
    for e, link in zip(doc["entries"], links, strict=True):
        assert e["href"] == link
        raw = unquote_to_bytes(link).removesuffix(b"/")
        assert raw in by_name
        assert e["name"] == raw.decode("utf-8", "replace")
        assert link.endswith("/") == by_name[raw] == (e["type"] == "directory")


class Structure(HTMLParser):
    """Every tag, attribute and text node of a page, as a parser sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += attrs

    def handle_data(self, data: str) -> None:
        self.texts.append(data)


def structure(html_page: bytes) -> Structure:
    parsed = Structure()
    parsed.feed(html_page.decode("utf-8"))
    return parsed


def test_hostile_names_are_text_and_links_never_markup() -> None:
    """A page of hostile names has the very structure of a page of plain names with the
    same extensions: no tag, no attribute more; each name is one text node."""
    plain_names = [f"n{i}{os.path.splitext(n)[1]}" for i, n in enumerate(HOSTILE)]
    plain = structure(page([entry(n.encode()) for n in plain_names])[1])
    hostile = structure(page([entry(n.encode()) for n in HOSTILE])[1])
    assert sorted(hostile.tags) == sorted(plain.tags)  # rows in another order, same rows
    assert sorted(k for k, _ in hostile.attributes) == sorted(k for k, _ in plain.attributes)
    assert hostile.tags.count("script") == 1
    for name in HOSTILE:
        assert name in hostile.texts
    hrefs = [v for k, v in hostile.attributes if k in ("href", "src") and v]
    assert not [h for h in hrefs if ":" in h.split("/")[0]]  # no scheme: all relative


NAMES = st.text(min_size=1, max_size=40).filter(
    lambda s: "/" not in s and "\0" not in s and s not in (".", "..")  # what a directory holds
)


@given(NAMES)
def test_any_text_name_is_one_text_node_and_its_link_stays_below(name: str) -> None:
    as_html = page([entry(os.fsencode(name))])[1]
    parsed = structure(as_html)
    assert os.fsencode(name).decode("utf-8", "replace") in parsed.texts
    (link,) = entry_links(as_html.decode("utf-8"))
    assert urljoin("http://h/x/", link) == "http://h/x/" + link


def test_the_page_links_sorting_paging_and_the_path() -> None:
    entries = [entry(f"f{i}".encode()) for i in range(25)] + [entry(b"sub", is_dir=True)]
    view = View("size", "desc", 2, "f")
    path = RequestPath(("Fotos 2024", "été"), True)
    links = Links(path.url(slash=True))
    chosen = select(entries, view, 10)
    text = render_html(path, chosen, view, links).decode("utf-8")
    crumbs = re.findall(r'<a href="([^"]*)"( aria-current="page")?>([^<]*)</a>', text)
    assert ("/Fotos%202024/", "", "Fotos 2024") in crumbs
    assert ("./", ' aria-current="page"', "été") in crumbs  # the directory as it opens
    assert '<link rel="prev" href="?sort=size&amp;order=desc&amp;q=f">' in text
    assert '<link rel="next" href="?sort=size&amp;order=desc&amp;q=f&amp;page=3">' in text
    assert (
        '<th class="s" aria-sort="descending"><a href="?sort=size&amp;order=asc&amp;q=f">' in text
    )
    assert '<th class="n"><a href="?q=f">' in text  # name, ascending: the default
    assert "25 of 26 entries match" in text and "page 2 of 3" in text


def test_json_pages_carry_next_and_prev() -> None:
    entries = [entry(f"f{i}".encode()) for i in range(25)]
    first = json.loads(page(entries, View(), 10)[0])
    middle = json.loads(page(entries, View(page=2), 10)[0])
    last = json.loads(page(entries, View(page=3), 10)[0])
    assert (first["prev"], first["next"]) == (None, "/x/?page=2")
    assert (middle["prev"], middle["next"]) == ("/x/", "/x/?page=3")
    assert (last["prev"], last["next"], last["pages"], last["total"]) == ("/x/?page=2", None, 3, 25)
    assert [e["name"] for e in last["entries"]] == [f"f{i}" for i in range(20, 25)]


def test_signed_links_carry_the_pages_expiry_and_open_only_what_is_below() -> None:
    key = SigningKey(b"k" * 32)
    browse = Browse(page_size=10, signer=key)
    request = parsed_request(
        "GET", "/a%20b/?page=2&ferryman-expires=2000000000&ferryman-signature=x"
    )
    path = resolve(b"/a%20b/")
    links = browse.links(request, "/a%20b/", now=1_000)
    entries = [entry(f"f{i}".encode()) for i in range(15)] + [entry(b"d", is_dir=True)]
    view = View(page=2)
    doc = json.loads(render_json("/a%20b/", select(entries, view, 10), view, links))
    wanted = key.sign("GET", "/a%20b/f9", 2_000_000_000)
    assert doc["entries"][0]["href"] == (
        f"/a%20b/f9?ferryman-expires=2000000000&ferryman-signature={wanted}"
    )
    here = key.sign("GET", "/a%20b/", 2_000_000_000)
    assert doc["prev"] == f"/a%20b/?ferryman-expires=2000000000&ferryman-signature={here}"
    text = render_html(path, select(entries, view, 10), view, links).decode()
    assert f'name="ferryman-signature" value="{here}"' in text  # the ?q= form stays signed
    parent = re.search(r'<tr class="up">.*?<a href="([^"]*)">', text)
    assert parent is not None and parent.group(1) == "/"  # above the page: never signed
    by_token = browse.links(parsed_request("GET", "/a%20b/"), "/a%20b/", now=1_000)
    assert by_token.expires == 1_000 + 3600
