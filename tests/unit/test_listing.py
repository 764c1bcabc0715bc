"""Listings render valid UTF-8 whatever the names, and link each entry by its raw bytes."""

from __future__ import annotations

import json
import os
import re
from html import unescape
from urllib.parse import unquote_to_bytes

from hypothesis import given
from hypothesis import strategies as st

from ferryman.app.listing import Entry, render_html, render_json

# A name on disk: any bytes but "/" and NUL (what a POSIX file system allows).
raw_name = st.binary(min_size=1, max_size=30).filter(lambda b: b"/" not in b and b"\0" not in b)


def entry(raw: bytes, is_dir: bool = False) -> Entry:
    return Entry(os.fsdecode(raw), is_dir, 0 if is_dir else 7, 1_700_000_000)


def test_a_name_that_is_not_utf8_is_shown_replaced_and_linked_raw() -> None:
    entries = [entry(b"caf\xe9.txt"), entry(b"d\xff\xfe", is_dir=True), entry("é €".encode())]
    doc = json.loads(render_json("/x/", entries).decode("utf-8"))  # strict
    assert [(e["name"], e["href"], e["type"]) for e in doc["entries"]] == [
        ("caf\ufffd.txt", "caf%E9.txt", "file"),
        ("d\ufffd\ufffd", "d%FF%FE/", "directory"),
        ("é €", "%C3%A9%20%E2%82%AC", "file"),
    ]
    page = render_html("/x/", entries).decode("utf-8")  # strict
    assert '<a href="caf%E9.txt">caf\ufffd.txt</a>' in page
    assert '<a href="d%FF%FE/">d\ufffd\ufffd/</a>' in page


@given(st.lists(st.tuples(raw_name, st.booleans()), max_size=8))
def test_any_names_render_as_utf8_with_links_to_their_bytes(
    names: list[tuple[bytes, bool]],
) -> None:
    entries = [entry(raw, is_dir) for raw, is_dir in names]
    doc = json.loads(render_json("/d/", entries).decode("utf-8"))
    page = render_html("/d/", entries).decode("utf-8")
    links = [unescape(h) for h in re.findall(r'<a href="([^"]*)">', page)][1:]  # after "../"
    assert len(doc["entries"]) == len(links) == len(entries)
    for e, link, (raw, is_dir) in zip(doc["entries"], links, names, strict=True):
        assert e["name"] == raw.decode("utf-8", "replace")
        assert e["href"] == link
        assert unquote_to_bytes(link) == raw + (b"/" if is_dir else b"")
        assert e["type"] == ("directory" if is_dir else "file")
