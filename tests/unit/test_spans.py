"""ferryman.http.spans against models that work byte by byte (Python's own ranges)."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ferryman.http import spans as spans_module
from ferryman.http.ranges import RangeKind, evaluate_range
from ferryman.http.spans import Span, parse_content_range

offsets = st.integers(0, 5000)
block_sizes = st.integers(1, 700)


@st.composite
def spans(draw: st.DrawFn, *, min_length: int = 0) -> Span:
    start = draw(offsets)
    return Span(start, start + draw(st.integers(min_length, 3000)))


def bytes_of(span: Span | None) -> range:
    """The offsets a span holds, as the model sees them."""
    return range(0) if span is None else range(span.start, span.end)


@given(spans(), block_sizes)
@example(Span(0, 0), 1)
@example(Span(9, 11), 10)
def test_splitting_into_blocks_covers_exactly_the_span(span: Span, block_size: int) -> None:
    pieces = list(span.split(block_size))
    covered = [offset for _, piece in pieces for offset in bytes_of(piece)]
    assert covered == list(bytes_of(span))  # every byte once, in order
    indexes = [block for block, _ in pieces]
    assert indexes == list(span.blocks(block_size))
    assert indexes == sorted({offset // block_size for offset in bytes_of(span)})
    for block, piece in pieces:
        assert piece.length > 0
        assert block * block_size <= piece.start < piece.end <= (block + 1) * block_size


@given(spans(), spans())
@example(Span(0, 5), Span(5, 9))  # touching: no byte in common
@example(Span(3, 3), Span(0, 9))  # empty
def test_intersection_is_commutative_and_within_both(a: Span, b: Span) -> None:
    both = a.intersect(b)
    assert both == b.intersect(a)
    assert set(bytes_of(both)) == set(bytes_of(a)) & set(bytes_of(b))
    if both is not None:  # None exactly when no byte is shared: never an empty span
        assert both.length > 0
        assert a.intersect(both) == both == b.intersect(both)


@given(spans(), offsets)
@example(Span(10, 20), 10)
@example(Span(10, 20), 5)
def test_clamp_never_exceeds_the_size(span: Span, size: int) -> None:
    clamped = span.clamp(size)
    assert clamped.end <= size and clamped.within(size)
    assert list(bytes_of(clamped)) == [o for o in bytes_of(span) if o < size]


@given(spans(min_length=1), st.integers(0, 3000))
def test_content_range_round_trips_through_the_parser(span: Span, extra: int) -> None:
    size = span.end + extra
    assert parse_content_range(span.content_range(size)) == (span, size)
    assert parse_content_range(span.content_range(size).replace(f"/{size}", "/*")) == (span, None)
    # and the Range field asking for it selects exactly it
    decision = evaluate_range(span.range_header(), size)
    assert (decision.kind, decision.ranges) == (RangeKind.PARTIAL, (span,))


def test_the_http_forms_name_the_last_byte() -> None:
    assert Span(0, 100).content_range(1000) == "bytes 0-99/1000"
    assert Span(999, 1000).content_range(1000) == "bytes 999-999/1000"
    assert Span(5, 6).range_header() == "bytes=5-5"
    with pytest.raises(ValueError):
        Span(5, 5).content_range(10)  # no bytes: HTTP cannot write it
    with pytest.raises(ValueError):
        Span(5, 5).range_header()


@pytest.mark.parametrize(
    "value",
    [
        "bytes */1000",  # a 416's form names no bytes
        "bytes 5-4/10",  # last before first
        "bytes 0-10/10",  # past the end
        "bytes 0-9",
        "bytes=0-9/10",
        "bytes 0-\u0669/10",  # ARABIC-INDIC DIGIT NINE
        " bytes 0-9/10",
        "bytes 0-9/10 ",
        "bytes -1-9/10",
        "bytes 0-" + "9" * 20 + "/*",
        "",
    ],
)
def test_what_is_not_a_content_range(value: str) -> None:
    assert parse_content_range(value) is None


def test_a_span_is_a_value() -> None:
    assert Span(3, 10).length == 7 and Span(3, 3).length == 0
    assert Span(1, 2) == Span(1, 2) and hash(Span(1, 2)) == hash(Span(1, 2))
    assert Span(1, 2) != Span(1, 3) and Span(1, 2) != Span(0, 2) and Span(1, 2) != (1, 2)
    assert repr(Span(1, 2)) == "Span(1, 2)"
    assert Span(0, 10).within(10) and not Span(0, 11).within(10) and Span(10, 10).within(10)
    for start, end in [(5, 4), (-1, 4), (-2, -1)]:
        with pytest.raises(ValueError):
            Span(start, end)
    with pytest.raises(ValueError):
        Span(0, 4).blocks(0)


def test_public_surface() -> None:
    assert sorted(spans_module.__all__) == ["Span", "parse_content_range"]
