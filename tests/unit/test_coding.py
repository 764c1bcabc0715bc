"""Accept-Encoding negotiation (http/coding.py) against a reference model of RFC 9110 12.5.3."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ferryman.http.coding import coded_etag, parse_accept_encoding, qvalue, rank

OFFERED = ("zstd", "br", "gzip")
NAMES = ["zstd", "br", "gzip", "x-gzip", "identity", "*", "deflate", "compress", "ZSTD", "Gzip"]
QS = ["0", "0.0", "0.001", "0.5", "0.50", "0.999", "1", "1.0", "1.000", "2", "-1", "0.5000", "x"]


def model(accept: str | None) -> tuple[str | None, bool]:
    """What the answer must be: the coding (None: identity), and whether 406 is due.

    Written from the RFC's sentences, separately from the code: the first mention of a
    coding counts, `*` covers whatever is not named, identity is acceptable unless
    refused, and when not named it comes after every acceptable coding.
    """
    if accept is None:
        return None, False
    weights: dict[str, float] = {}
    for element in accept.split(","):
        name, *params = (p.strip() for p in element.split(";"))
        name = {"x-gzip": "gzip"}.get(name.lower(), name.lower())
        if not name:
            continue
        q = 1.0
        valid = True
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    valid = False
                    continue
                digits = value.partition(".")[2]
                valid = 0 <= q <= 1 and len(digits) <= 3 and value[:1] in "01"
                valid = valid and all(c.isdigit() for c in value.replace(".", "", 1))
        if valid and name not in weights:
            weights[name] = q
    star = weights.get("*")
    identity = weights.get("identity", star if star is not None else 0.0005)
    best: tuple[float, int, str] | None = None
    for order, coding in enumerate(OFFERED):
        q = weights.get(coding, star if star is not None else 0.0)
        if q > 0 and (best is None or (q, -order) > (best[0], -best[1])):
            best = (q, order, coding)
    if best is not None and best[0] >= identity:
        return best[2], False
    if identity > 0:
        return None, False
    return (best[2], False) if best is not None else (None, True)


def answer(accept: str | None) -> tuple[str | None, bool]:
    ranking = rank(accept, OFFERED)
    if ranking.codings:
        return ranking.codings[0][0], False
    return None, not ranking.identity


element = st.builds(
    lambda name, q, space: name + (f"{space};{space}q={q}" if q is not None else ""),
    st.sampled_from(NAMES),
    st.none() | st.sampled_from(QS),
    st.sampled_from(["", " "]),
)
header = st.lists(element, max_size=6).map(", ".join)


@given(header)
def test_the_choice_follows_the_rfc(accept: str) -> None:
    assert answer(accept) == model(accept)


@given(header)
def test_a_refused_coding_is_never_chosen(accept: str) -> None:
    weights = parse_accept_encoding(accept)
    ranking = rank(accept, OFFERED)
    for coding, q in ranking.codings:
        assert q > 0
        assert weights.get(coding, weights.get("*")) == q


@given(header)
def test_codings_come_best_first_then_in_the_servers_order(accept: str) -> None:
    codings = rank(accept, OFFERED).codings
    keys = [(-q, OFFERED.index(c)) for c, q in codings]
    assert keys == sorted(keys)


@given(st.text(max_size=80))
def test_any_text_is_read_without_error(accept: str) -> None:
    ranking = rank(accept, OFFERED)
    assert all(c in OFFERED for c, _ in ranking.codings)


def test_the_cases_users_meet() -> None:
    assert answer(None) == (None, False)  # no header: identity (curl without --compressed)
    assert answer("") == (None, False)  # empty: identity only
    assert answer("gzip, deflate, br, zstd") == ("zstd", False)  # a current browser
    assert answer("gzip, deflate, br") == ("br", False)
    assert answer("gzip") == ("gzip", False)
    assert answer("x-gzip") == ("gzip", False)
    assert answer("gzip;q=0.5, br;q=0.9") == ("br", False)
    assert answer("br;q=0, *") == ("zstd", False)
    assert answer("gzip;q=0") == (None, False)
    assert answer("identity") == (None, False)
    assert answer("gzip;q=0.5, identity") == (None, False)  # identity named higher
    assert answer("gzip, identity") == ("gzip", False)  # a tie goes to the coding
    assert answer("*") == ("zstd", False)
    assert answer("identity;q=0") == (None, True)  # refused, and nothing else named
    assert answer("*;q=0") == (None, True)
    assert answer("*;q=0, identity") == (None, False)
    assert answer("identity;q=0, gzip;q=0.1") == ("gzip", False)
    assert answer("deflate") == (None, False)
    assert answer("gzip;q=2") == (None, False)  # not a qvalue: the element is ignored


def test_qvalues() -> None:
    assert [qvalue(t) for t in ("0", "0.5", "1", "1.000", "0.001")] == [0, 0.5, 1, 1, 0.001]
    assert [qvalue(t) for t in ("1.5", "0.0001", "2", "", "-0", ".5", "1.001")] == [None] * 7


def test_each_coding_has_its_own_etag() -> None:
    assert coded_etag('"abc"', "gzip") == '"abc+gzip"'
    assert coded_etag('W/"abc"', "br") == 'W/"abc+br"'
    assert len({coded_etag('"x"', c) for c in OFFERED} | {'"x"'}) == 4
