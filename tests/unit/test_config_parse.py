"""config/parse.py: what a setting takes, against reference models (Hypothesis).

A size is exact decimal arithmetic rounded down, a duration a float of
seconds, a list of locations what was given without the empty items; any
other input, text or a TOML value, is a ConfigError and never anything else
(a traceback at start is what an operator must never see).
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ferryman.config.options import OPTIONS, Option
from ferryman.config.parse import (
    DURATION_UNITS,
    MAX_SIZE,
    SIZE_UNITS,
    parse_bool,
    parse_duration,
    parse_locations,
    parse_size,
    show_duration,
    show_size,
)
from ferryman.errors import ConfigError

spaces = st.sampled_from(["", " ", "  ", "\t"])


def any_case(text: str) -> st.SearchStrategy[str]:
    return st.tuples(*(st.sampled_from([c.lower(), c.upper()]) for c in text)).map("".join)


size_units = st.sampled_from(sorted(SIZE_UNITS)).flatmap(
    lambda u: st.tuples(st.just(SIZE_UNITS[u]), any_case(u))
)
duration_units = st.sampled_from(sorted(DURATION_UNITS)).flatmap(
    lambda u: st.tuples(st.just(DURATION_UNITS[u]), any_case(u))
)
toml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=5,
)
numberish = st.from_regex(r"\s*-?\d{0,400}(\.\d{0,20})?\s*[a-zA-Z]{0,4}\s*", fullmatch=True)


@given(st.integers(0, 10**15), size_units, spaces, spaces, spaces)
def test_a_whole_size_is_the_number_times_its_unit(
    n: int, unit: tuple[int, str], before: str, between: str, after: str
) -> None:
    factor, name = unit
    assert_size(f"{before}{n}{between}{name}{after}", n * factor)


@given(st.integers(0, 10**9), st.text("0123456789", min_size=1, max_size=12), size_units)
@example(1, "005", (1000, "kb"))  # a float made this 1004
@example(2, "3", (1000**2, "mb"))
def test_a_decimal_size_is_exact_then_rounded_down(
    whole: int, fraction: str, unit: tuple[int, str]
) -> None:
    factor, name = unit
    exact = (Fraction(whole) + Fraction(int(fraction), 10 ** len(fraction))) * factor
    assert_size(f"{whole}.{fraction}{name}", math.floor(exact))


def assert_size(text: str, expected: int) -> None:
    if expected <= MAX_SIZE:
        assert parse_size(text) == expected
    else:
        with pytest.raises(ConfigError, match="too large"):
            parse_size(text)


@given(st.integers(0, MAX_SIZE))
def test_every_size_is_shown_as_text_that_reads_back_to_it(size: int) -> None:
    shown = show_size(size)
    assert parse_size(shown) == size
    assert parse_size(size) == size  # a TOML integer


@given(st.integers(MAX_SIZE + 1, 10**30))
def test_a_size_beyond_a_file_offset_is_refused(size: int) -> None:
    with pytest.raises(ConfigError, match="too large"):
        parse_size(str(size))


@given(st.integers(0, 10**9), duration_units, spaces, spaces)
def test_a_duration_is_the_number_times_its_unit(
    n: int, unit: tuple[float, str], before: str, between: str
) -> None:
    factor, name = unit
    assert parse_duration(f"{before}{n}{between}{name}") == n * factor


@given(st.integers(0, 10**9).map(lambda ms: ms / 1000))
def test_every_default_like_duration_is_shown_as_text_that_reads_back_to_it(
    seconds: float,
) -> None:
    assert parse_duration(show_duration(seconds)) == pytest.approx(seconds, rel=1e-12)


@given(numberish | st.text())
@example("9" * 400)  # more digits than a float holds: once an OverflowError
@example("9" * 400 + "k")
def test_any_text_is_a_size_or_a_config_error(text: str) -> None:
    try:
        size = parse_size(text)
    except ConfigError:
        return
    assert 0 <= size <= MAX_SIZE


@given(numberish | st.text())
@example("9" * 400)  # once an infinite duration
def test_any_text_is_a_finite_duration_or_a_config_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ConfigError:
        return
    assert math.isfinite(seconds) and seconds >= 0


@given(toml_values, st.sampled_from(OPTIONS))
@example(math.inf, next(o for o in OPTIONS if o.name == "header-timeout"))  # TOML has inf
@example(math.nan, next(o for o in OPTIONS if o.name == "cache-revalidate"))
def test_any_toml_value_is_a_setting_or_a_config_error(value: object, option: Option) -> None:
    try:
        parsed = option.kind.parse(value)
    except ConfigError:
        return
    assert not isinstance(parsed, float) or math.isfinite(parsed)


@given(st.sampled_from(["1", "true", "YES", " on ", "0", "false", "No", "OFF"]))
def test_booleans_read_in_any_case(text: str) -> None:
    assert parse_bool(text) is (text.strip().lower() in ("1", "true", "yes", "on"))


location = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")),
                   min_size=1).filter(lambda s: s == "".join(s.split()))  # fmt: skip


@given(st.lists(location, max_size=5), st.sampled_from([" ", "\t", "\n", "  "]))
def test_locations_from_the_environment_are_split_on_whitespace(items: list[str], gap: str) -> None:
    assert parse_locations(gap.join(items)) == tuple(items)


@given(st.lists(st.text(), max_size=5))
def test_locations_from_flags_and_toml_are_kept_whole_but_the_empty_ones(
    items: list[str],
) -> None:
    assert parse_locations(items) == tuple(i for i in items if i)


@given(st.lists(st.integers() | st.none(), min_size=1, max_size=3) | st.integers())
def test_locations_that_are_not_text_are_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="expected directories or s3:// URLs"):
        parse_locations(value)


def test_codings_keep_the_servers_order_and_refuse_unknown_ones() -> None:
    from ferryman.config.parse import parse_codings

    assert parse_codings("gzip,zstd") == ("zstd", "gzip")
    assert parse_codings(" br , GZIP ") == ("br", "gzip")
    assert parse_codings(["gzip", "br"]) == ("br", "gzip")
    assert parse_codings("none") == ()
    for wrong in ("deflate", "gzip,lz4", 3, ["gzip", 1]):
        with pytest.raises(ConfigError):
            parse_codings(wrong)
