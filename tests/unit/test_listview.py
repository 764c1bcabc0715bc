"""The view a listing's query asks for, its order and its pages (pure, property-tested)."""

from __future__ import annotations

import itertools
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.app.listing import Entry
from ferryman.app.listview import (
    Page,
    View,
    matches,
    natural_key,
    page_of,
    parse_view,
    sort_entries,
)
from ferryman.errors import HttpError

names = st.text(min_size=1, max_size=12)
entries = st.lists(
    st.builds(Entry, names, st.booleans(), st.integers(0, 10**12), st.integers(0, 2**33)),
    max_size=30,
    unique_by=lambda e: e.name,
)
SORTS = st.sampled_from(["name", "size", "modified"])
ORDERS = st.sampled_from(["asc", "desc"])
views = st.builds(View, SORTS, ORDERS)


def test_natural_order_case_insensitive_with_a_stable_tie_break() -> None:
    listed = [Entry(n, False, 0, 0) for n in ["file 10", "File 9", "file 9", "file 010", "a", "B"]]
    ordered = [e.name for e in sort_entries(listed, View())]
    assert ordered == ["a", "B", "File 9", "file 9", "file 010", "file 10"]


@given(entries, views, st.randoms(use_true_random=False))
def test_the_order_does_not_depend_on_the_order_read(
    listed: list[Entry], view: View, rnd: random.Random
) -> None:
    shuffled = listed[:]
    rnd.shuffle(shuffled)
    assert sort_entries(shuffled, view) == sort_entries(listed, view)


@given(entries, views)
def test_directories_first_then_by_the_key_reversed_for_desc(
    listed: list[Entry], view: View
) -> None:
    ordered = sort_entries(listed, view)
    assert sorted(ordered, key=lambda e: e.name) == sorted(listed, key=lambda e: e.name)
    kinds = [e.is_dir for e in ordered]
    assert kinds == sorted(kinds, reverse=True)  # every directory before every file
    field = {"name": None, "size": "size", "modified": "mtime"}[view.sort]
    for a, b in itertools.pairwise(ordered):
        if a.is_dir != b.is_dir:
            continue
        first, second = (a, b) if view.order == "asc" else (b, a)
        if field is not None:
            assert getattr(first, field) <= getattr(second, field)
            if getattr(first, field) != getattr(second, field):
                continue
        assert (natural_key(first.name), first.name) < (natural_key(second.name), second.name)


@given(st.lists(st.integers(0, 10**30), min_size=2, max_size=10, unique=True), st.text(max_size=3))
def test_numbers_in_names_compare_as_numbers(numbers: list[int], prefix: str) -> None:
    if re.search(r"\d", prefix):
        prefix = "x"
    listed = [Entry(f"{prefix}{n}.txt", False, 0, 0) for n in numbers]
    ordered = [e.name for e in sort_entries(listed, View())]
    assert ordered == [f"{prefix}{n}.txt" for n in sorted(numbers)]


def test_a_name_of_thousands_of_digits_is_ordered_without_converting_it() -> None:
    long = "9" * 5000
    listed = [Entry(long, False, 0, 0), Entry("1" + "0" * 5000, False, 0, 0)]
    assert [e.name for e in sort_entries(listed, View())] == [long, "1" + "0" * 5000]


@settings(deadline=None)
@given(st.integers(0, 5_000), st.integers(1, 2_000))
def test_pages_cover_every_entry_once(total: int, size: int) -> None:
    count = Page(1, size, total).count
    covered: list[int] = []
    for number in range(1, count + 1):
        page = page_of(View(page=number), size, total)
        assert page.has_prev == (number > 1) and page.has_next == (number < count)
        assert 0 < page.end - page.start <= size or total == 0
        covered.extend(range(page.start, page.end))
    assert covered == list(range(total))
    with pytest.raises(HttpError) as past:
        page_of(View(page=count + 1), size, total)
    assert past.value.status == 404


@pytest.mark.parametrize(
    ("query", "view"),
    [
        (b"", View()),
        (b"sort=size&order=desc&page=3", View("size", "desc", 3)),
        (b"q=%C3%A9t%C3%A9+x&ferryman-expires=1&ferryman-signature=ab", View(q="été x")),
        (b"sort=&order=&page=", View()),
        (b"page=2&page=4", View(page=4)),
    ],
)
def test_queries(query: bytes, view: View) -> None:
    assert parse_view(query) == view


@pytest.mark.parametrize(
    "query", [b"sort=type", b"order=up", b"page=0", b"page=-1", b"page=x", b"page=99999999999",
              b"page=%EF%BC%91"],
)  # fmt: skip
def test_bad_queries_are_400(query: bytes) -> None:
    with pytest.raises(HttpError) as refused:
        parse_view(query)
    assert refused.value.status == 400


@given(st.builds(View, SORTS, ORDERS, st.integers(1, 10**6), st.text(max_size=20)))
def test_a_views_query_reads_back_as_itself(view: View) -> None:
    assert parse_view(view.query().encode("ascii")) == view


def test_toggling_a_column() -> None:
    assert View().toggled("name") == View("name", "desc")
    assert View("name", "desc", 4).toggled("name") == View("name", "asc", 1)
    assert View("name", "desc").toggled("size") == View("size", "asc")


@given(st.text(max_size=10), st.text(max_size=4))
def test_q_is_a_case_insensitive_substring(name: str, q: str) -> None:
    assert matches(name, q) == (q.casefold() in name.casefold())
    assert matches(name.upper(), name) == (name.casefold() in name.upper().casefold())
