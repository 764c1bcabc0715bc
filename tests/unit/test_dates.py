"""ferryman.http.dates: the three HTTP-date forms, checked against the stdlib's calendar."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ferryman.http import dates
from ferryman.http.dates import format_http_date, parse_http_date

MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z
MIN_EPOCH = -62135596800  # 0001-01-01T00:00:00Z
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc(epoch_seconds: int) -> datetime:
    return EPOCH + timedelta(seconds=epoch_seconds)


def three_forms(epoch_seconds: int) -> tuple[str, str, str]:
    """IMF-fixdate, RFC 850 and asctime spellings built independently of the module."""
    t = utc(epoch_seconds)
    day, long_day, month = DAYS[t.weekday()][:3], DAYS[t.weekday()], MONTHS[t.month - 1]
    clock = f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    return (
        f"{day}, {t.day:02d} {month} {t.year:04d} {clock} GMT",
        f"{long_day}, {t.day:02d}-{month}-{t.year % 100:02d} {clock} GMT",
        f"{day} {month} {t.day:2d} {clock} {t.year:04d}",
    )


def test_rfc9110_example() -> None:
    assert format_http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == 784111777
    assert parse_http_date("Sun Nov  6 08:49:37 1994") == 784111777


@pytest.mark.parametrize(
    ("epoch", "text"),
    [
        (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (951782400, "Tue, 29 Feb 2000 00:00:00 GMT"),
        (1709164800, "Thu, 29 Feb 2024 00:00:00 GMT"),
        (2147483647, "Tue, 19 Jan 2038 03:14:07 GMT"),
        (2147483648, "Tue, 19 Jan 2038 03:14:08 GMT"),
        (MAX_EPOCH, "Fri, 31 Dec 9999 23:59:59 GMT"),
        (-1, "Wed, 31 Dec 1969 23:59:59 GMT"),
        (MIN_EPOCH, "Mon, 01 Jan 0001 00:00:00 GMT"),
    ],
)
def test_known_instants(epoch: int, text: str) -> None:
    assert format_http_date(epoch) == text
    assert parse_http_date(text) == epoch


@pytest.mark.parametrize("epoch", [MIN_EPOCH - 1, MAX_EPOCH + 1, 10**20, -(10**20)])
def test_format_out_of_range(epoch: int) -> None:
    with pytest.raises(ValueError):
        format_http_date(epoch)


@given(st.integers(0, MAX_EPOCH))
@example(0)
@example(MAX_EPOCH)
def test_format_matches_stdlib_and_round_trips(epoch: int) -> None:
    text = format_http_date(epoch)
    assert text == email.utils.formatdate(epoch, usegmt=True)
    assert parse_http_date(text) == epoch


@given(st.integers(MIN_EPOCH, MAX_EPOCH))
def test_round_trip_whole_range(epoch: int) -> None:
    assert parse_http_date(format_http_date(epoch)) == epoch


# RFC 850's two-digit year is read as 1970-2069, so the three forms agree there.
@given(st.integers(0, int(datetime(2070, 1, 1, tzinfo=UTC).timestamp()) - 1))
@example(0)
@example(3155759999)  # 2069-12-31T23:59:59Z
@example(946684800)  # 2000-01-01
def test_three_forms_parse_equal(epoch: int) -> None:
    imf, rfc850, asctime = three_forms(epoch)
    assert parse_http_date(imf) == epoch
    assert parse_http_date(rfc850) == epoch
    assert parse_http_date(asctime) == epoch


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("Thursday, 01-Jan-70 00:00:00 GMT", 0),  # 70 -> 1970
        ("Wednesday, 31-Dec-69 00:00:00 GMT", 3155673600),  # 69 -> 2069
        ("Saturday, 01-Jan-00 00:00:00 GMT", 946684800),  # 00 -> 2000
        ("Friday, 31-Dec-99 23:59:59 GMT", 946684799),  # 99 -> 1999
        ("Wed Nov 16 08:49:37 1994", 784111777 + 10 * 86400),  # two-digit asctime day
        ("Sun Nov 06 08:49:37 1994", 784111777),  # 2DIGIT allowed in asctime too
        ("  Sun, 06 Nov 1994 08:49:37 GMT\t", 784111777),  # OWS stripped
        ("Sat, 31 Dec 2016 23:59:60 GMT", 1483228800),  # leap second
        ("Mon, 06 Nov 1994 08:49:37 GMT", 784111777),  # wrong weekday: not checked
        ("Tue, 29 Feb 2000 00:00:00 GMT", 951782400),
    ],
)
def test_accepted(text: str, epoch: int) -> None:
    assert parse_http_date(text) == epoch


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "784111777",
        "Sun, 06 Nov 1994 25:49:37 GMT",  # hour 25
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:37 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 30 Feb 1994 08:49:37 GMT",  # Feb 30
        "Thu, 29 Feb 1900 00:00:00 GMT",  # 1900 is not a leap year
        "Sun, 29 Feb 2023 00:00:00 GMT",
        "Sun, 31 Apr 2023 00:00:00 GMT",
        "Sun, 32 Jan 2023 00:00:00 GMT",
        "Sun, 00 Jan 2023 00:00:00 GMT",
        "Sun, 01 Jan 0000 00:00:00 GMT",  # no year zero
        "Sun, 06 Foo 1994 08:49:37 GMT",  # bad month
        "Xyz, 06 Nov 1994 08:49:37 GMT",  # bad day name
        "sun, 06 Nov 1994 08:49:37 GMT",  # names are case-sensitive
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 06 NOV 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 gmt",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 +0000",
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 6 Nov 1994 08:49:37 GMT",  # IMF day is 2DIGIT
        "Sun, 06 Nov 94 08:49:37 GMT",  # IMF year is 4DIGIT
        "Sun,  06 Nov 1994 08:49:37 GMT",
        "Sun 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06 Nov 1994 08:49:37 GMT",  # long day name in IMF-fixdate
        "Sun, 06-Nov-94 08:49:37 GMT",  # short day name in RFC 850
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 8:49:37 GMT",
        "Sun Nov 6 08:49:37 1994",  # asctime pads a one-digit day with a space
        "Sun Nov  6 08:49:37 94",
        "Sun Nov  6 08:49:37 1994 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT\n",  # only SP/HTAB are OWS
        "Sun, 06 Nov 1994 08:49:37 GMT\r\n",
        "Sun, \u0660\u0666 Nov 1994 08:49:37 GMT",  # non-ASCII digits
        "Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMTX",
    ],
)
def test_rejected(text: str) -> None:
    assert parse_http_date(text) is None


@given(st.text())
def test_junk_never_raises(text: str) -> None:
    result = parse_http_date(text)
    assert result is None or MIN_EPOCH <= result <= MAX_EPOCH + 1


@given(st.integers(0, MAX_EPOCH), st.data())
def test_single_character_corruption_never_raises(epoch: int, data: st.DataObject) -> None:
    text = format_http_date(epoch)
    position = data.draw(st.integers(0, len(text) - 1))
    replacement = data.draw(st.characters())
    corrupted = text[:position] + replacement + text[position + 1 :]
    result = parse_http_date(corrupted)
    if result is not None and not corrupted.endswith(":60 GMT"):
        # it parsed, so it is the instant its text names (the weekday is not checked)
        assert format_http_date(result)[3:] == corrupted[3:]


def test_public_surface() -> None:
    assert sorted(dates.__all__) == ["format_http_date", "parse_http_date"]
