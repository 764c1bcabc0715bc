"""ferryman.http.ranges against published vectors and a reference model.

The model works on spec tuples, not text, and selects bytes by slicing
`range(length)` (Python's own clamping) instead of by arithmetic, so it shares
no code path with the implementation.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from ferryman.http import ranges
from ferryman.http.body import FileRegion
from ferryman.http.ranges import (
    RangeDecision,
    RangeKind,
    evaluate_range,
    unsatisfied_content_range,
)
from ferryman.http.spans import Span

FULL = RangeKind.FULL
PARTIAL = RangeKind.PARTIAL
UNSAT = RangeKind.UNSATISFIABLE
MAX = 2**63 - 1


def pattern(length: int) -> bytes:
    """nginx range.t style payload: every 10-byte block names its own index."""
    blocks = (f"X{i:03d}XXXXXX" for i in range(length // 10 + 1))
    return "".join(blocks).encode()[:length]


Spans = list[tuple[int, int]]  # (first, last) byte of each range, inclusive


def spans(decision: RangeDecision) -> Spans:
    """The decided ranges as first and last byte, as the vectors below write them."""
    return [(r.start, r.end - 1) for r in decision.ranges]


# --- published vectors ----------------------------------------------------------

# RFC 9110 section 14.1.2 examples, on a 10000-byte representation.
RFC_9110 = [
    ("bytes=0-499", [(0, 499)]),
    ("bytes=500-999", [(500, 999)]),
    ("bytes=-500", [(9500, 9999)]),
    ("bytes=9500-", [(9500, 9999)]),
    ("bytes=0-0,-1", [(0, 0), (9999, 9999)]),
    ("bytes=500-600,601-999", [(500, 600), (601, 999)]),
    ("bytes=500-700,601-999", [(500, 700), (601, 999)]),  # overlap kept, not coalesced
]


@pytest.mark.parametrize(("header", "expected"), RFC_9110)
def test_rfc9110_examples(header: str, expected: list[tuple[int, int]]) -> None:
    decision = evaluate_range(header, 10000)
    assert decision.kind is PARTIAL
    assert spans(decision) == expected


# nginx-tests range.t style, on its 1000-byte "X%03dXXXXXX" file (and a tiny one).
NGINX = [
    ("bytes=0-", 1000, PARTIAL, [(0, 999)]),
    ("bytes=-0", 1000, UNSAT, []),
    ("bytes=100-99", 1000, UNSAT, []),
    ("bytes=99999999999999999999-1", 1000, UNSAT, []),
    ("bytes=99999999999999999999-", 1000, UNSAT, []),
    ("bytes=5-", 1000, PARTIAL, [(5, 999)]),
    ("bytes=-10", 5, PARTIAL, [(0, 4)]),
    ("bytes=0-9", 5, PARTIAL, [(0, 4)]),
    ("bytes=0-1,2-3", 1000, PARTIAL, [(0, 1), (2, 3)]),
    ("bytes=0-9, -10", 1000, PARTIAL, [(0, 9), (990, 999)]),
    ("bytes=1000-", 1000, UNSAT, []),
    ("bytes=0-1,1000-", 1000, PARTIAL, [(0, 1)]),
    ("bytes=1000-,-0", 1000, UNSAT, []),
    ("bytes=0-99,10-1", 1000, UNSAT, []),
    ("bytes=0-,0-", 1000, FULL, []),  # sum 2000 > 1000
]


@pytest.mark.parametrize(("header", "length", "kind", "expected"), NGINX)
def test_nginx_style(header: str, length: int, kind: RangeKind, expected: Spans) -> None:
    decision = evaluate_range(header, length)
    assert decision.kind is kind
    assert spans(decision) == expected
    payload = pattern(length)
    got = [payload[r.start : r.end] for r in decision.ranges]
    assert got == [payload[s : e + 1] for s, e in expected]


def test_self_identifying_bytes() -> None:
    payload = pattern(1000)
    decision = evaluate_range("bytes=120-129,-10,995-", 1000)
    assert [payload[r.start : r.end] for r in decision.ranges] == [
        b"X012XXXXXX",
        b"X099XXXXXX",
        b"XXXXX",
    ]


# Go net/http fs_test ServeFileRangeTests and range_test ParseRange cases,
# on Go's 11-byte testdata/file. Go's half-open pairs are written inclusive here.
GO_LEN = 11
GO = [
    ("", FULL, []),
    ("bytes=0-4", PARTIAL, [(0, 4)]),
    ("bytes=2-", PARTIAL, [(2, 10)]),
    ("bytes=-5", PARTIAL, [(6, 10)]),
    ("bytes=3-7", PARTIAL, [(3, 7)]),
    ("bytes=0-0,-2", PARTIAL, [(0, 0), (9, 10)]),
    ("bytes=0-1,5-8", PARTIAL, [(0, 1), (5, 8)]),
    ("bytes=0-1,5-", PARTIAL, [(0, 1), (5, 10)]),
    ("bytes=5-1000", PARTIAL, [(5, 10)]),
    ("bytes=0-,1-,2-,3-,4-", FULL, []),  # amplification
    ("bytes=0-9", PARTIAL, [(0, 9)]),
    ("bytes=0-10", PARTIAL, [(0, 10)]),
    ("bytes=0-11", PARTIAL, [(0, 10)]),
    ("bytes=10-11", PARTIAL, [(10, 10)]),
    ("bytes=10-", PARTIAL, [(10, 10)]),
    ("bytes=11-", UNSAT, []),
    ("bytes=11-12", UNSAT, []),
    ("bytes=12-12", UNSAT, []),
    ("bytes=11-100", UNSAT, []),
    ("bytes=100-", UNSAT, []),
    ("bytes=100-1000", UNSAT, []),
    ("bytes=20-", UNSAT, []),
    ("bytes=", UNSAT, []),
    ("bytes=-", UNSAT, []),
    ("bytes= 0-1", PARTIAL, [(0, 1)]),
    ("bytes=   1-2  ,  4-5", PARTIAL, [(1, 2), (4, 5)]),
    ("bytes=7", UNSAT, []),
    ("bytes= 7 ", UNSAT, []),
    ("bytes=5-4", UNSAT, []),
    ("bytes=0-2,5-4", UNSAT, []),
    ("bytes=2-5,4-3", UNSAT, []),
    ("bytes=--5,4--3", UNSAT, []),
    ("bytes=A-", UNSAT, []),
    ("bytes=A- ", UNSAT, []),
    ("bytes=A-Z", UNSAT, []),
    ("bytes= -Z", UNSAT, []),
    ("bytes=5-Z", UNSAT, []),
    ("bytes=Ran-dom, garbage", UNSAT, []),
    ("bytes=0x01-0x02", UNSAT, []),
    ("bytes=         ", UNSAT, []),
    ("bytes= , , ,   ", UNSAT, []),
    ("bytes=0-9", PARTIAL, [(0, 9)]),
    ("bytes=0-", PARTIAL, [(0, 10)]),
    ("bytes=5-", PARTIAL, [(5, 10)]),
    ("bytes=0-20", PARTIAL, [(0, 10)]),
    ("bytes=15-,0-5", PARTIAL, [(0, 5)]),
    ("bytes=1-2,5-", PARTIAL, [(1, 2), (5, 10)]),
    ("bytes=-2 , 7-", PARTIAL, [(9, 10), (7, 10)]),
    ("bytes=0-0 ,2-2, 7-", PARTIAL, [(0, 0), (2, 2), (7, 10)]),
    ("bytes=-5", PARTIAL, [(6, 10)]),
    ("bytes=-15", PARTIAL, [(0, 10)]),
    ("bytes=0-499", PARTIAL, [(0, 10)]),
    ("bytes=500-999", UNSAT, []),
    ("bytes=-500", PARTIAL, [(0, 10)]),
    ("bytes=9500-", UNSAT, []),
    ("bytes=0-0,-1", PARTIAL, [(0, 0), (10, 10)]),
    ("bytes=500-600,601-999", UNSAT, []),
    ("bytes=500-700,601-999", UNSAT, []),
]


@pytest.mark.parametrize(("header", "kind", "expected"), GO)
def test_go_net_http(header: str, kind: RangeKind, expected: Spans) -> None:
    decision = evaluate_range(header, GO_LEN)
    assert decision.kind is kind
    assert spans(decision) == expected


# --- this project's own rules ---------------------------------------------------

OWN = [
    (None, 100, FULL, []),
    ("", 100, FULL, []),
    ("items=0-1", 100, FULL, []),  # unknown unit ignored
    ("foo", 100, FULL, []),
    ("bytes =0-1", 100, FULL, []),  # unit "bytes " is not "bytes" (as nginx)
    ("BYTES=0-1", 100, PARTIAL, [(0, 1)]),
    ("Bytes=-1", 100, PARTIAL, [(99, 99)]),
    (" bytes=0-1 ", 100, PARTIAL, [(0, 1)]),
    ("bytes", 100, UNSAT, []),
    ("bytes=0-1,,5-6", 100, PARTIAL, [(0, 1), (5, 6)]),
    ("bytes=,0-1,", 100, PARTIAL, [(0, 1)]),
    ("bytes=\t0-1\t,\t2-3", 100, PARTIAL, [(0, 1), (2, 3)]),
    ("bytes=0 -1", 100, UNSAT, []),
    ("bytes=0- 1", 100, UNSAT, []),
    ("bytes=+0-1", 100, UNSAT, []),
    ("bytes=0-+1", 100, UNSAT, []),
    ("bytes=-+1", 100, UNSAT, []),
    ("bytes=1.0-2", 100, UNSAT, []),
    ("bytes=\u0663-4", 100, UNSAT, []),  # ARABIC-INDIC DIGIT THREE: not a DIGIT
    ("bytes=\u00b2-4", 100, UNSAT, []),  # SUPERSCRIPT TWO
    ("bytes=0-1\r\n", 100, UNSAT, []),
    ("bytes=0-1;2-3", 100, UNSAT, []),
    ("bytes=0-1,a", 100, UNSAT, []),  # one bad spec spoils the header
    ("bytes=00-01", 100, PARTIAL, [(0, 1)]),  # leading zeros are digits
    (f"bytes=0-{MAX}", 100, PARTIAL, [(0, 99)]),
    (f"bytes=0-{MAX + 1}", 100, UNSAT, []),
    (f"bytes={MAX}-", 100, UNSAT, []),
    (f"bytes=-{MAX}", 100, PARTIAL, [(0, 99)]),
    (f"bytes=-{MAX + 1}", 100, UNSAT, []),
    ("bytes=0-", 0, FULL, []),  # empty representation: 200 with an empty body
    ("bytes=-0", 0, FULL, []),
    ("bytes=-5", 0, FULL, []),
    ("bytes=junk", 0, FULL, []),
    ("bytes=0-0", 1, PARTIAL, [(0, 0)]),
    ("bytes=-1", 1, PARTIAL, [(0, 0)]),
    ("bytes=1-", 1, UNSAT, []),
    ("bytes=0-49,50-99", 100, PARTIAL, [(0, 49), (50, 99)]),  # sum == length is fine
    ("bytes=0-49,49-99", 100, FULL, []),  # one byte more than the file
    ("bytes=0-0,0-0,0-0", 100, PARTIAL, [(0, 0), (0, 0), (0, 0)]),
    ("bytes=-1,0-", 100, FULL, []),
]


@pytest.mark.parametrize(("header", "length", "kind", "expected"), OWN)
def test_project_rules(header: str | None, length: int, kind: RangeKind, expected: Spans) -> None:
    decision = evaluate_range(header, length)
    assert decision.kind is kind
    assert spans(decision) == expected


def test_max_ranges_disables_ranges() -> None:
    hundred = ",".join(f"{i}-{i}" for i in range(100))
    assert evaluate_range("bytes=" + hundred, 1000).kind is PARTIAL
    assert evaluate_range("bytes=" + hundred + ",500-500", 1000).kind is FULL
    assert evaluate_range("bytes=0-0,1-1,2-2", 1000, max_ranges=2).kind is FULL
    assert evaluate_range("bytes=0-0,,,1-1", 1000, max_ranges=2).kind is PARTIAL
    assert evaluate_range("bytes=0-0", 1000, max_ranges=0).kind is FULL


def test_huge_numbers_are_cheap_and_never_crash() -> None:
    # int() of more than 4300 digits raises ValueError in Python 3.11: the guard must stop it.
    assert evaluate_range("bytes=" + "9" * 1_000_000 + "-", 10).kind is UNSAT
    assert evaluate_range("bytes=0-" + "9" * 1_000_000, 10).kind is UNSAT
    assert evaluate_range("bytes=-" + "1" * 5000, 10).kind is UNSAT
    decision = evaluate_range("bytes=" + "0" * 1_000_000 + "5-0006", 10)
    assert spans(decision) == [(5, 6)]


def test_negative_length_is_a_caller_bug() -> None:
    with pytest.raises(ValueError):
        evaluate_range("bytes=0-1", -1)


def test_content_range_values() -> None:
    assert unsatisfied_content_range(1000) == "bytes */1000"
    assert unsatisfied_content_range(0) == "bytes */0"
    decision = evaluate_range("bytes=0-99,999-", 1000)
    assert [r.content_range(1000) for r in decision.ranges] == [
        "bytes 0-99/1000",
        "bytes 999-999/1000",
    ]


def test_public_surface() -> None:
    assert sorted(ranges.__all__) == [
        "RangeDecision",
        "RangeKind",
        "evaluate_range",
        "unsatisfied_content_range",
    ]
    assert {k.name for k in RangeKind} == {"FULL", "PARTIAL", "UNSATISFIABLE"}


# --- reference model ------------------------------------------------------------

# A spec is ("int", first, last | None), ("suffix", n) or ("bad", text).
Spec = tuple[Any, ...]


def model(length: int, specs: list[Spec], max_ranges: int) -> tuple[RangeKind, Spans]:
    """Expected (kind, [(start, end), ...]) for a bytes Range made of `specs`."""
    if length == 0 or len(specs) > max_ranges:
        return FULL, []
    if not specs or not all(valid(spec) for spec in specs):
        return UNSAT, []
    everything = range(length)
    selected = []
    for spec in specs:
        if spec[0] == "int":
            _, first, last = spec
            chosen = everything[first:] if last is None else everything[first : last + 1]
        else:
            chosen = everything[-spec[1] :] if spec[1] else range(0)
        if chosen:
            selected.append((chosen[0], chosen[-1]))
    if not selected:
        return UNSAT, []
    if sum(end - start + 1 for start, end in selected) > length:
        return FULL, []
    return PARTIAL, selected


def valid(spec: Spec) -> bool:
    if spec[0] == "bad":
        return False
    if spec[0] == "suffix":
        return bool(spec[1] <= MAX)
    _, first, last = spec
    return first <= MAX and (last is None or first <= last <= MAX)


BAD_ELEMENTS = [
    "-",
    "abc",
    "1-2-3",
    "1 -2",
    "+1-2",
    "0x1-2",
    "1-+2",
    "\u0663-4",
    "1.5-2",
    "--5",
    "5",
]
numbers = st.one_of(
    st.integers(0, 40),
    st.integers(0, 2**40),
    st.integers(MAX - 2, MAX + 2),
)
specs_strategy = st.one_of(
    st.tuples(st.just("int"), numbers, st.none() | numbers),
    st.tuples(st.just("suffix"), numbers),
    st.tuples(st.just("bad"), st.sampled_from(BAD_ELEMENTS)),
)
ows = st.sampled_from(["", " ", "\t", "  "])


@st.composite
def headers(draw: st.DrawFn) -> tuple[str, list[Spec]]:
    specs = draw(st.lists(specs_strategy, max_size=8))
    elements = [render(spec, draw(st.integers(0, 2))) for spec in specs]
    # sprinkle empty list elements, which do not count
    for _ in range(draw(st.integers(0, 2))):
        elements.insert(draw(st.integers(0, len(elements))), "")
    joined = ",".join(draw(ows) + element + draw(ows) for element in elements)
    unit = draw(st.sampled_from(["bytes", "BYTES", "Bytes", "bYtEs"]))
    return f"{unit}={joined}", specs


def render(spec: Spec, zeros: int) -> str:
    pad = "0" * zeros
    if spec[0] == "bad":
        return str(spec[1])
    if spec[0] == "suffix":
        return f"-{pad}{spec[1]}"
    _, first, last = spec
    return f"{pad}{first}-" + ("" if last is None else f"{pad}{last}")


lengths = st.one_of(st.integers(0, 60), st.integers(0, 2**40))
max_ranges_strategy = st.one_of(st.just(100), st.integers(0, 6))


@given(headers(), lengths, max_ranges_strategy)
@example(("bytes=0-0,-1", [("int", 0, 0), ("suffix", 1)]), 10000, 100)
@example(("bytes=-0,5-", [("suffix", 0), ("int", 5, None)]), 6, 100)
def test_matches_reference_model(
    header_specs: tuple[str, list[Spec]], length: int, max_ranges: int
) -> None:
    header, specs = header_specs
    decision = evaluate_range(header, length, max_ranges=max_ranges)
    assert (decision.kind, spans(decision)) == model(length, specs, max_ranges)
    check_invariants(decision, length, max_ranges)


def check_invariants(decision: RangeDecision, length: int, max_ranges: int) -> None:
    if decision.kind is PARTIAL:
        assert 1 <= len(decision.ranges) <= max_ranges
        for r in decision.ranges:
            assert 0 <= r.start < r.end <= length
        assert sum(r.length for r in decision.ranges) <= length
    else:
        assert decision.ranges == ()


junk = st.one_of(
    st.text(),
    st.text(alphabet="bytesBYTES=0123456789-, \t\r\n\x00\u0663"),
    st.builds(lambda s: "bytes=" + s, st.text(alphabet="0123456789-, \t")),
)


@given(junk, lengths, max_ranges_strategy)
def test_junk_never_raises(header: str, length: int, max_ranges: int) -> None:
    decision = evaluate_range(header, length, max_ranges=max_ranges)
    assert isinstance(decision.kind, RangeKind)
    check_invariants(decision, length, max_ranges)


@given(st.text().map(lambda unit: unit.replace("=", "")), st.text())
@example("items", "0-1")
@example("bytes ", "0-1")
def test_other_units_are_ignored(unit: str, rest: str) -> None:
    assume(unit.strip(" \t").lower() != "bytes" or unit.rstrip(" \t") != unit)
    assert evaluate_range(f"{unit}={rest}", 100).kind is FULL


@given(
    st.integers(0, 10**18 - 1), st.integers(0, 10**18 - 1), st.integers(0, 2), lengths,
    max_ranges_strategy,
)  # fmt: skip
def test_the_single_closed_range_shortcut_matches_the_model(
    first: int, last: int, zeros: int, length: int, max_ranges: int
) -> None:
    """ "bytes=first-last" takes a shorter path in evaluate_range: same answers."""
    spec: Spec = ("int", first, last)
    header = "bytes=" + render(spec, zeros)
    decision = evaluate_range(header, length, max_ranges=max_ranges)
    assert (decision.kind, spans(decision)) == model(length, [spec], max_ranges)
    check_invariants(decision, length, max_ranges)


def test_values_compare_by_every_field() -> None:
    # The property tests above compare decisions with ==: an __eq__ that said
    # yes too often would let them pass on wrong answers.
    assert Span(1, 2) == Span(1, 2) and hash(Span(1, 2)) == hash(Span(1, 2))
    assert Span(1, 2) != Span(1, 3) and Span(1, 2) != Span(0, 2)
    assert Span(1, 2) != (1, 2)
    one = RangeDecision(RangeKind.PARTIAL, (Span(0, 1),))
    assert one == RangeDecision(RangeKind.PARTIAL, (Span(0, 1),))
    assert one != RangeDecision(RangeKind.PARTIAL, (Span(0, 2),))
    assert one != RangeDecision(RangeKind.FULL, (Span(0, 1),))
    assert RangeDecision(RangeKind.FULL) != RangeDecision(RangeKind.UNSATISFIABLE)
    region = FileRegion(3, 10, 5)
    assert region == FileRegion(3, 10, 5) and hash(region) == hash(FileRegion(3, 10, 5))
    assert region != FileRegion(4, 10, 5)
    assert region != FileRegion(3, 11, 5)
    assert region != FileRegion(3, 10, 6)
    assert repr(region) == "FileRegion(fd=3, offset=10, count=5)"
    with pytest.raises(ValueError):
        Span(5, 4)
