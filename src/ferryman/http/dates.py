"""HTTP-date formatting and parsing (RFC 9110 section 5.6.7).

A sender emits only IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"); a recipient
must also accept the two obsolete forms, RFC 850 ("Sunday, 06-Nov-94 08:49:37
GMT") and asctime ("Sun Nov  6 08:49:37 1994"). Values are epoch seconds (UTC).

Everything here is arithmetic on integers: no clock, no time zone, no locale
(strftime's day and month names follow the locale, HTTP's never do).

Choices the RFC leaves open:

* Two-digit RFC 850 years: RFC 9110 says to read them as the most recent
  year that is not more than 50 years in the future. That needs a clock, which
  this module does not have, so it uses the fixed rule "yy < 70 -> 20yy,
  otherwise 19yy" (the POSIX strptime %y rule). It agrees with the RFC rule for
  every date from 2020 to 2069.
* The day name must be one of the listed names, but is not checked against the
  date (as Go's net/http and nginx do): it is redundant, and a sender that got
  it wrong still meant the date it wrote.
* Second 60 (a leap second, allowed by the grammar) counts as the first second
  of the next minute, as POSIX timegm does.
* Years run from 0001 to 9999, the range a four-digit year can name.
* Leading and trailing SP/HTAB (header OWS) are ignored; everything else must
  match the grammar exactly, with case-sensitive names.
"""

from __future__ import annotations

import calendar
import re

__all__ = ["format_http_date", "parse_http_date"]

_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LONG_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER = {name: number for number, name in enumerate(_MONTHS, start=1)}

_MIN_EPOCH = -62135596800  # 0001-01-01T00:00:00Z
_MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z
_SECONDS_PER_DAY = 86400

_DAY = "(?:" + "|".join(_DAY_NAMES) + ")"
_LONG_DAY = "(?:" + "|".join(_LONG_DAY_NAMES) + ")"
_MONTH = "(?P<month>" + "|".join(_MONTHS) + ")"
_TIME = "(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"

_IMF_FIXDATE = re.compile(rf"{_DAY}, (?P<day>[0-9]{{2}}) {_MONTH} (?P<year>[0-9]{{4}}) {_TIME} GMT")
_RFC850_DATE = re.compile(
    rf"{_LONG_DAY}, (?P<day>[0-9]{{2}})-{_MONTH}-(?P<year>[0-9]{{2}}) {_TIME} GMT"
)
_ASCTIME_DATE = re.compile(
    rf"{_DAY} {_MONTH} (?P<day>[0-9]{{2}}| [0-9]) {_TIME} (?P<year>[0-9]{{4}})"
)
_FORMATS = (_IMF_FIXDATE, _RFC850_DATE, _ASCTIME_DATE)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2  # count years from March so the leap day ends the year
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """The inverse of _days_from_civil: (year, month, day)."""
    days += 719468
    era = days // 146097
    day_of_era = days - era * 146097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153  # 0 is March
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + 3 if shifted_month < 10 else shifted_month - 9
    return year_of_era + era * 400 + (month <= 2), month, day


def format_http_date(epoch_seconds: int) -> str:
    """IMF-fixdate for `epoch_seconds`, e.g. "Sun, 06 Nov 1994 08:49:37 GMT".

    Raises ValueError outside years 0001-9999, which the format cannot name.
    """
    if not _MIN_EPOCH <= epoch_seconds <= _MAX_EPOCH:
        raise ValueError(f"epoch seconds out of the HTTP-date range: {epoch_seconds}")
    days, seconds = divmod(epoch_seconds, _SECONDS_PER_DAY)
    year, month, day = _civil_from_days(days)
    hour, seconds = divmod(seconds, 3600)
    minute, second = divmod(seconds, 60)
    weekday = _DAY_NAMES[(days + 3) % 7]  # 1970-01-01 was a Thursday
    return (
        f"{weekday}, {day:02d} {_MONTHS[month - 1]} {year:04d} "
        f"{hour:02d}:{minute:02d}:{second:02d} GMT"
    )


def parse_http_date(value: str) -> int | None:
    """Epoch seconds of an HTTP-date in any of the three RFC 9110 forms, else None.

    Never raises: garbage, unknown names and out-of-range fields give None.
    """
    text = value.strip(" \t")
    for pattern in _FORMATS:
        match = pattern.fullmatch(text)
        if match is not None:
            return _to_epoch(match)
    return None


def _to_epoch(match: re.Match[str]) -> int | None:
    """Validate the matched fields and convert them; None if a field is out of range."""
    year_text = match["year"]
    year = int(year_text)
    if len(year_text) == 2:
        year += 2000 if year < 70 else 1900  # see the module docstring
    month = _MONTH_NUMBER[match["month"]]
    day = int(match["day"])  # int() skips the asctime leading space
    hour, minute, second = int(match["hour"]), int(match["minute"]), int(match["second"])
    if not (1 <= year <= 9999 and 1 <= day <= _days_in_month(year, month)):
        return None
    if hour > 23 or minute > 59 or second > 60:
        return None
    days = _days_from_civil(year, month, day)
    return days * _SECONDS_PER_DAY + hour * 3600 + minute * 60 + second


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if calendar.isleap(year) else 28
    return 30 if month in (4, 6, 9, 11) else 31
