"""ferryman.http.conditional: RFC 9110 section 13 preconditions, step by step and in order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.http import conditional
from ferryman.http.conditional import (
    Outcome,
    Validators,
    evaluate_preconditions,
    if_range_matches,
    parse_etag_list,
)
from ferryman.http.dates import format_http_date

PROCEED = Outcome.PROCEED
NOT_MODIFIED = Outcome.NOT_MODIFIED
FAILED = Outcome.PRECONDITION_FAILED

T = 1_700_000_000
AT = format_http_date(T)
BEFORE = format_http_date(T - 1)
AFTER = format_http_date(T + 1)
STRONG = Validators(etag='"abc"', last_modified=T)
WEAK = Validators(etag='W/"abc"', last_modified=T)
BARE = Validators(etag=None, last_modified=None)


def evaluate(
    method: str = "GET",
    validators: Validators = STRONG,
    exists: bool = True,
    **headers: str,
) -> Outcome:
    return evaluate_preconditions(
        method,
        if_match=headers.get("im"),
        if_none_match=headers.get("inm"),
        if_modified_since=headers.get("ims"),
        if_unmodified_since=headers.get("ius"),
        validators=validators,
        exists=exists,
    )


CASES = [
    # --- no preconditions
    ("GET", STRONG, True, {}, PROCEED),
    ("PUT", BARE, False, {}, PROCEED),
    # --- step 1: If-Match, strong comparison
    ("GET", STRONG, True, {"im": '"abc"'}, PROCEED),
    ("PUT", STRONG, True, {"im": '"abc"'}, PROCEED),
    ("PUT", STRONG, True, {"im": '"xyz"'}, FAILED),
    ("PUT", STRONG, True, {"im": '"xyz", "abc"'}, PROCEED),
    ("PUT", STRONG, True, {"im": '"xyz" ,\t"abc" '}, PROCEED),
    ("PUT", STRONG, True, {"im": ', ,"abc",'}, PROCEED),  # empty list elements
    ("PUT", STRONG, True, {"im": 'W/"abc"'}, FAILED),  # a weak tag never matches
    ("PUT", WEAK, True, {"im": '"abc"'}, FAILED),  # nor does a weak current tag
    ("PUT", WEAK, True, {"im": 'W/"abc"'}, FAILED),
    ("PUT", STRONG, True, {"im": '"ABC"'}, FAILED),  # opaque tags are case-sensitive
    ("PUT", STRONG, True, {"im": "*"}, PROCEED),
    ("PUT", STRONG, True, {"im": " * "}, PROCEED),
    ("PUT", BARE, False, {"im": "*"}, FAILED),  # nothing to match
    ("PUT", STRONG, False, {"im": '"abc"'}, FAILED),
    ("PUT", BARE, True, {"im": '"abc"'}, FAILED),  # no ETag at all
    ("PUT", STRONG, True, {"im": "abc"}, FAILED),  # malformed: unquoted
    ("PUT", STRONG, True, {"im": '"abc'}, FAILED),  # malformed: unterminated
    ("PUT", STRONG, True, {"im": '"abc" "def"'}, FAILED),  # malformed: no comma
    ("PUT", STRONG, True, {"im": '*, "abc"'}, FAILED),  # malformed: * in a list
    ("PUT", STRONG, True, {"im": '"abc", junk'}, FAILED),  # one bad element spoils it
    ("PUT", STRONG, True, {"im": ""}, FAILED),  # an empty list matches nothing
    # --- step 2: If-Unmodified-Since, only without If-Match
    ("PUT", STRONG, True, {"ius": AT}, PROCEED),
    ("PUT", STRONG, True, {"ius": AFTER}, PROCEED),
    ("PUT", STRONG, True, {"ius": BEFORE}, FAILED),
    ("GET", STRONG, True, {"ius": BEFORE}, FAILED),
    ("PUT", Validators('"abc"', None), True, {"ius": AT}, PROCEED),  # no date: ignored
    ("PUT", BARE, False, {"ius": AT}, PROCEED),  # RFC 9110 13.1.4
    ("PUT", STRONG, True, {"ius": "yesterday"}, PROCEED),  # invalid date ignored
    ("PUT", STRONG, True, {"ius": ""}, PROCEED),
    ("PUT", STRONG, True, {"ius": "Sunday, 06-Nov-94 08:49:37 GMT"}, FAILED),  # RFC 850
    ("PUT", STRONG, True, {"im": '"abc"', "ius": BEFORE}, PROCEED),  # If-Match wins
    ("PUT", STRONG, True, {"im": '"xyz"', "ius": AFTER}, FAILED),
    ("PUT", STRONG, True, {"im": "garbage", "ius": AFTER}, FAILED),
    # --- step 3: If-None-Match, weak comparison
    ("GET", STRONG, True, {"inm": '"abc"'}, NOT_MODIFIED),
    ("HEAD", STRONG, True, {"inm": '"abc"'}, NOT_MODIFIED),
    ("GET", STRONG, True, {"inm": 'W/"abc"'}, NOT_MODIFIED),
    ("GET", WEAK, True, {"inm": '"abc"'}, NOT_MODIFIED),
    ("GET", WEAK, True, {"inm": 'W/"abc"'}, NOT_MODIFIED),
    ("GET", STRONG, True, {"inm": '"xyz"'}, PROCEED),
    ("GET", STRONG, True, {"inm": '"xyz", W/"abc"'}, NOT_MODIFIED),
    ("GET", STRONG, True, {"inm": '"a,b", "abc"'}, NOT_MODIFIED),  # comma inside a tag
    ("GET", Validators('"a,b"', T), True, {"inm": '"a,b"'}, NOT_MODIFIED),
    ("GET", STRONG, True, {"inm": "*"}, NOT_MODIFIED),
    ("GET", BARE, False, {"inm": "*"}, PROCEED),
    ("PUT", BARE, False, {"inm": "*"}, PROCEED),  # create-only upload of a new file
    ("PUT", STRONG, True, {"inm": "*"}, FAILED),  # create-only but it exists
    ("POST", STRONG, True, {"inm": '"abc"'}, FAILED),
    ("DELETE", STRONG, True, {"inm": 'W/"abc"'}, FAILED),
    ("get", STRONG, True, {"inm": '"abc"'}, FAILED),  # methods are case-sensitive
    ("GET", BARE, True, {"inm": '"abc"'}, PROCEED),
    ("GET", STRONG, False, {"inm": '"abc"'}, PROCEED),
    ("GET", STRONG, True, {"inm": "abc"}, PROCEED),  # malformed: no match
    ("GET", STRONG, True, {"inm": 'w/"abc"'}, PROCEED),  # W/ is case-sensitive
    # --- step 4: If-Modified-Since, GET/HEAD only, only without If-None-Match
    ("GET", STRONG, True, {"ims": AT}, NOT_MODIFIED),
    ("HEAD", STRONG, True, {"ims": AFTER}, NOT_MODIFIED),
    ("GET", STRONG, True, {"ims": BEFORE}, PROCEED),
    ("GET", BARE, True, {"ims": AT}, PROCEED),  # no date: assume modified
    ("GET", STRONG, True, {"ims": "not a date"}, PROCEED),
    ("GET", STRONG, True, {"ims": "Sun Nov  6 08:49:37 1994"}, PROCEED),  # asctime, older
    ("PUT", STRONG, True, {"ims": AT}, PROCEED),  # ignored for other methods
    ("POST", STRONG, True, {"ims": AFTER}, PROCEED),
    ("GET", STRONG, True, {"inm": '"xyz"', "ims": AT}, PROCEED),  # If-None-Match present
    ("GET", STRONG, True, {"inm": "malformed", "ims": AT}, PROCEED),  # still present
    ("GET", STRONG, True, {"inm": '"abc"', "ims": BEFORE}, NOT_MODIFIED),
    # --- order between steps
    ("GET", STRONG, True, {"im": '"xyz"', "inm": '"abc"'}, FAILED),  # 412 beats 304
    ("GET", STRONG, True, {"im": '"abc"', "inm": '"abc"'}, NOT_MODIFIED),
    ("GET", STRONG, True, {"ius": BEFORE, "inm": '"abc"'}, FAILED),
    ("GET", STRONG, True, {"ius": BEFORE, "ims": AT}, FAILED),
    ("GET", STRONG, True, {"ius": AT, "ims": AT}, NOT_MODIFIED),
    ("PUT", STRONG, True, {"im": '"abc"', "inm": '"abc"'}, FAILED),
    ("PUT", STRONG, True, {"im": '"abc"', "inm": '"xyz"'}, PROCEED),
    ("GET", STRONG, True, {"im": "*", "ius": BEFORE, "inm": '"xyz"', "ims": AFTER}, PROCEED),
]


@pytest.mark.parametrize(("method", "validators", "exists", "headers", "expected"), CASES)
def test_preconditions(
    method: str, validators: Validators, exists: bool, headers: dict[str, str], expected: Outcome
) -> None:
    assert evaluate(method, validators, exists, **headers) is expected


# RFC 9110 section 8.8.3.2 comparison table.
@pytest.mark.parametrize(
    ("a", "b", "strong", "weak"),
    [
        ('W/"1"', 'W/"1"', False, True),
        ('W/"1"', 'W/"2"', False, False),
        ('W/"1"', '"1"', False, True),
        ('"1"', '"1"', True, True),
    ],
)
def test_rfc9110_comparison_table(a: str, b: str, strong: bool, weak: bool) -> None:
    current = Validators(etag=a, last_modified=None)
    assert (evaluate("PUT", current, im=b) is PROCEED) is strong
    assert (evaluate("GET", current, inm=b) is NOT_MODIFIED) is weak
    assert if_range_matches(b, current) is strong


IF_RANGE = [
    (None, STRONG, True),  # no If-Range: honour the Range
    ('"abc"', STRONG, True),
    (' "abc" ', STRONG, True),
    ('"xyz"', STRONG, False),
    ('W/"abc"', STRONG, False),  # weak tags never match in If-Range
    ('"abc"', WEAK, False),
    ('W/"abc"', WEAK, False),
    ('"abc"', BARE, False),
    ('"abc', STRONG, False),  # malformed tag
    ("W/abc", STRONG, False),
    ('"abc", "xyz"', STRONG, False),  # If-Range holds one validator, not a list
    (AT, STRONG, True),
    (BEFORE, STRONG, False),  # exact match, not <=
    (AFTER, STRONG, False),
    ("Tuesday, 14-Nov-23 22:13:20 GMT", STRONG, True),  # same instant, RFC 850
    (AT, BARE, False),
    ("not a date", STRONG, False),
    ("", STRONG, False),
]


@pytest.mark.parametrize(("value", "validators", "expected"), IF_RANGE)
def test_if_range(value: str | None, validators: Validators, expected: bool) -> None:
    assert if_range_matches(value, validators) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("*", ["*"]),
        (" * ", ["*"]),
        ('"a"', ['"a"']),
        ('W/"a"', ['W/"a"']),
        ('""', ['""']),
        ('"a", W/"b" ,"c"', ['"a"', 'W/"b"', '"c"']),
        (',,"a",, ,"b",', ['"a"', '"b"']),
        ('"a,b"', ['"a,b"']),
        ('"\x80\xff!#~"', ['"\x80\xff!#~"']),  # obs-text and the etagc edges
        ("", []),
        (" , ", []),
        ("a", None),
        ('"a" "b"', None),
        ('"a', None),
        ('"a"b', None),
        ('"a b"', None),  # SP is not etagc
        ('"a"b"', None),
        ('"\x7f"', None),
        ('"\u0100"', None),  # beyond obs-text
        ('w/"a"', None),
        ('W/ "a"', None),
        ("**", None),
        ('*,"a"', None),
        ('"a",*', None),
    ],
)
def test_parse_etag_list(value: str, expected: list[str] | None) -> None:
    assert parse_etag_list(value) == expected


header_text = st.one_of(
    st.none(),
    st.text(),
    st.text(alphabet='W/"*, \tabc\x80'),
    st.sampled_from([AT, BEFORE, AFTER, "*", '"abc"', 'W/"abc"']),
)
validators_strategy = st.builds(
    Validators,
    etag=st.one_of(st.none(), st.text(), st.sampled_from(['"abc"', 'W/"abc"', "junk"])),
    last_modified=st.one_of(st.none(), st.integers(-(2**40), 2**40)),
)


@given(
    st.one_of(st.sampled_from(["GET", "HEAD", "PUT", "DELETE"]), st.text()),
    header_text,
    header_text,
    header_text,
    header_text,
    validators_strategy,
    st.booleans(),
)
def test_never_raises(
    method: str,
    if_match: str | None,
    if_none_match: str | None,
    ims: str | None,
    ius: str | None,
    validators: Validators,
    exists: bool,
) -> None:
    outcome = evaluate_preconditions(
        method,
        if_match=if_match,
        if_none_match=if_none_match,
        if_modified_since=ims,
        if_unmodified_since=ius,
        validators=validators,
        exists=exists,
    )
    assert isinstance(outcome, Outcome)
    if method not in ("GET", "HEAD"):
        assert outcome is not NOT_MODIFIED
    if if_match is None and ius is None and if_none_match is None and ims is None:
        assert outcome is PROCEED
    assert isinstance(if_range_matches(if_match, validators), bool)


@given(
    st.one_of(
        st.builds(lambda weak, opaque: ("W/" if weak else "") + f'"{opaque}"', st.booleans(),
                  st.text(alphabet=st.characters(min_codepoint=0x23, max_codepoint=0x7E))),
        st.text(),
        st.sampled_from(["*", '"', 'W/"', "W/", '""']),
    ),
    st.sampled_from(["GET", "HEAD", "PUT", "DELETE"]),
    st.sampled_from(["im", "inm"]),
    st.booleans(),
)  # fmt: skip
def test_the_tag_sent_back_as_given_means_what_it_means_in_any_spelling(
    etag: str, method: str, header: str, exists: bool
) -> None:
    """A client sending back exactly the ETag it got is answered without parsing the
    list (the commonest revalidation); the answer is the parsed one's, which the same
    list with whitespace around it gets."""
    validators = Validators(etag=etag, last_modified=T)
    as_given = evaluate(method, validators, exists, **{header: etag})
    assert as_given is evaluate(method, validators, exists, **{header: f" {etag}\t"})


@given(st.lists(st.text(alphabet=st.characters(min_codepoint=0x23, max_codepoint=0x7E))))
def test_etag_lists_round_trip(opaques: list[str]) -> None:
    tags = ['"' + text.replace('"', "") + '"' for text in opaques]
    assert parse_etag_list(" , ".join(tags)) == tags


@given(st.text())
def test_parse_etag_list_never_raises(value: str) -> None:
    result = parse_etag_list(value)
    assert result is None or all(isinstance(tag, str) for tag in result)


def test_public_surface() -> None:
    assert sorted(conditional.__all__) == [
        "Outcome",
        "Validators",
        "evaluate_preconditions",
        "if_range_matches",
        "parse_etag_list",
    ]
