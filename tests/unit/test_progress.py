"""audit/progress.py: sizes, durations, rate and ETA; the line on a terminal or in a log.

The clock and the stream are injected: a fake clock moves only when a test
says so, and a StringIO that claims to be a terminal records every byte, so
what a terminal would show is worked out from the carriage returns.
"""

from __future__ import annotations

import io
import math
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ferryman.audit.progress import (
    SIZE_UNITS,
    Progress,
    eta,
    format_duration,
    format_rate,
    format_size,
    smooth,
)

SIZE = re.compile(r"^(\d+(?:\.\d)?) (B|KiB|MiB|GiB|TiB|PiB|EiB)$")
DURATION = re.compile(r"^(?:(\d+)d(\d\d)h|(\d+)h(\d\d)m|(\d+)m(\d\d)s|(\d+)s)$")


def parse_size(text: str) -> float:
    match = SIZE.match(text)
    assert match, text
    return float(match[1]) * float(1024 ** SIZE_UNITS.index(match[2]))


def parse_duration(text: str) -> int:
    match = DURATION.match(text)
    assert match, text
    d, dh, h, hm, m, ms, s = (int(g) if g else 0 for g in match.groups())
    return d * 86400 + dh * 3600 + h * 3600 + hm * 60 + m * 60 + ms + s


# -- sizes and durations ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (99 * 1024 + 1000, "100 KiB"),  # 99.98 KiB rounds up, one decimal is dropped
        (1024 * 1024 - 1, "1.0 MiB"),  # never "1024 KiB"
        (int(12.34 * 1024**2), "12.3 MiB"),
        (512 * 1024**3, "512 GiB"),
        (3 * 1024**6, "3.0 EiB"),
    ],
)
def test_format_size_examples(n: int, text: str) -> None:
    assert format_size(n) == text


@given(st.integers(min_value=0, max_value=2**64))
def test_format_size_is_close_short_and_well_formed(n: int) -> None:
    text = format_size(n)
    assert len(text) <= 9
    value = parse_size(text)
    if n < 1024:
        assert value == n
    else:
        assert abs(value - n) <= 0.05 * n  # one decimal of a value of at least 1.0
        assert float(text.split()[0]) < 1024


@given(st.integers(min_value=0, max_value=2**62), st.integers(min_value=0, max_value=2**62))
def test_format_size_never_goes_down_as_n_grows(a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert parse_size(format_size(low)) <= parse_size(format_size(high))


def test_format_rate() -> None:
    assert format_rate(10 * 1024**2) == "10.0 MiB/s"
    assert format_rate(2.5, "objects") == "2.5 objects/s"
    assert format_rate(12345.4, "objects") == "12,345 objects/s"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-5, "0s"),
        (59.4, "59s"),
        (59.6, "1m00s"),
        (65, "1m05s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (7620, "2h07m"),
        (86400 * 3 + 3600 * 4 + 59, "3d04h"),
        (86400 * 100, ">99d"),
        (math.inf, "?"),
        (math.nan, "?"),
    ],
)
def test_format_duration_examples(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.floats(min_value=0, max_value=99 * 86400, allow_nan=False))
def test_format_duration_is_exact_to_its_last_unit(seconds: float) -> None:
    text = format_duration(seconds)
    shown = parse_duration(text)
    whole = round(seconds)
    granularity = 1 if whole < 3600 else 60 if whole < 86400 else 3600
    assert 0 <= whole - shown < granularity


@given(st.floats(0, 99 * 86400, allow_nan=False), st.floats(0, 99 * 86400, allow_nan=False))
def test_format_duration_never_goes_down(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert parse_duration(format_duration(low)) <= parse_duration(format_duration(high))


# -- the rate and the time left ---------------------------------------------------------

rates = st.floats(min_value=0, max_value=1e12, allow_nan=False)
intervals = st.floats(min_value=1e-3, max_value=1e4, allow_nan=False)


@given(rates, rates, intervals, st.floats(min_value=0.1, max_value=100))
def test_smooth_lies_between_the_old_rate_and_the_new_one(
    previous: float, current: float, elapsed: float, window: float
) -> None:
    result = smooth(previous, current * elapsed, elapsed, window)
    low, high = sorted((previous, current))
    # Relative slack for rounding, and an absolute one for subnormal rates (5e-324 *
    # elapsed / elapsed is not 5e-324 again).
    assert low * (1 - 1e-9) - 1e-300 <= result <= high * (1 + 1e-9) + 1e-300


@given(rates, intervals)
def test_smooth_keeps_a_steady_rate(rate: float, elapsed: float) -> None:
    assert smooth(rate, rate * elapsed, elapsed, 10.0) == pytest.approx(rate, rel=1e-9, abs=1e-9)


@given(rates, intervals)
def test_smooth_takes_the_first_sample_as_it_is(rate: float, elapsed: float) -> None:
    assert smooth(None, rate * elapsed, elapsed, 10.0) == pytest.approx(rate, rel=1e-9)


def test_smooth_follows_a_change_within_a_few_windows() -> None:
    rate: float | None = 100.0
    for _ in range(60):  # 30 s of half-second samples at a new rate
        rate = smooth(rate, 500 * 0.5, 0.5, 10.0)
    assert rate == pytest.approx(500, rel=0.1)
    assert smooth(100.0, 0, 0, 10.0) == 100.0  # no time passed: nothing learned


@given(st.floats(min_value=1, max_value=1e15), st.floats(min_value=1e-3, max_value=1e12))
@example(remaining=1.0, rate=1.0)
def test_eta_is_what_is_left_over_the_rate(remaining: float, rate: float) -> None:
    left = eta(remaining, rate)
    assert left is not None
    assert left * rate == pytest.approx(remaining)


def test_eta_without_a_rate_or_with_nothing_left() -> None:
    assert eta(100, None) is None
    assert eta(100, 0.0) is None
    assert eta(0, None) == 0.0
    assert eta(-3, 5.0) == 0.0


# -- the line ---------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def visible(output: str) -> str:
    """The last line a terminal shows after `output` (carriage returns overwrite)."""
    line: list[str] = []
    column = 0
    for char in output:
        if char == "\r":
            column = 0
        elif char == "\n":
            line, column = [], 0
        else:
            if column < len(line):
                line[column] = char
            else:
                line.append(char)
            column += 1
    return "".join(line)


def run_job(progress: Progress, clock: Clock, seconds: float, step: float, per_step: int) -> None:
    """Advance `per_step` bytes and one object every `step` seconds for `seconds`."""
    for _ in range(round(seconds / step)):
        clock.now += step
        progress.advance(1, per_step)


def test_terminal_line_is_redrawn_at_most_ten_times_a_second() -> None:
    clock, out = Clock(), FakeTerminal()
    progress = Progress("audit", objects_total=100_000, stream=out, clock=clock, width=200)
    run_job(progress, clock, seconds=10, step=0.001, per_step=1024)  # 10,000 advances
    draws = out.getvalue().count("\r")
    assert 90 <= draws <= 101
    assert "\n" not in out.getvalue()


def test_terminal_line_shows_rate_eta_and_counts() -> None:
    clock, out = Clock(), FakeTerminal()
    total = 100 * 1024**2
    progress = Progress(
        "audit", objects_total=100, bytes_total=total, stream=out, clock=clock, width=200
    )
    run_job(progress, clock, seconds=5, step=0.1, per_step=1024**2)  # 10 MiB/s, 50 objects
    line = visible(out.getvalue())
    assert line.startswith("audit  50%  50/100 objects  50.0 MiB/100 MiB  10.0 MiB/s  ETA 5s")
    assert "elapsed 5s" in line


def test_terminal_line_is_cut_to_the_width_and_erased_at_the_end() -> None:
    clock, out = Clock(), FakeTerminal()
    progress = Progress("audit", objects_total=10**9, stream=out, clock=clock, width=30)
    run_job(progress, clock, seconds=2, step=0.05, per_step=4096)
    segments = out.getvalue().split("\r")
    assert all(len(s) <= 29 for s in segments)
    assert visible(out.getvalue()).strip()
    progress.close()
    assert visible(out.getvalue()).strip() == ""
    progress.close()  # a second close writes nothing
    assert out.getvalue().endswith("\r")


def test_a_shorter_line_leaves_nothing_of_the_longer_one() -> None:
    clock, out = Clock(), FakeTerminal()
    progress = Progress("a long label for a job", stream=out, clock=clock, width=200)
    clock.now += 1
    progress.advance(1, 10 * 1024**3)
    assert visible(out.getvalue()) == progress.line()
    progress.label = "x"
    clock.now += 1
    progress.tick()
    assert visible(out.getvalue()).rstrip() == progress.line()


def test_no_draw_for_a_job_shorter_than_a_redraw() -> None:
    clock, out = Clock(), FakeTerminal()
    with Progress("audit", stream=out, clock=clock) as progress:
        progress.advance(5, 500)
    assert out.getvalue() == ""


def test_a_log_gets_one_line_a_minute_and_a_last_one() -> None:
    clock, out = Clock(), io.StringIO()
    progress = Progress("repair", objects_total=10**6, stream=out, clock=clock)
    run_job(progress, clock, seconds=59, step=0.01, per_step=0)
    assert out.getvalue() == ""
    run_job(progress, clock, seconds=3600, step=0.01, per_step=0)
    progress.close()
    lines = out.getvalue().splitlines()
    assert 60 <= len(lines) <= 62
    assert "\r" not in out.getvalue()
    assert lines[-1].endswith("done")
    assert "objects/s" in lines[-1]


def test_a_broken_stream_ends_the_display_not_the_job() -> None:
    class Broken(FakeTerminal):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    clock = Clock()
    progress = Progress("audit", stream=Broken(), clock=clock)
    run_job(progress, clock, seconds=1, step=0.05, per_step=1)
    progress.close()
    assert progress.objects == 20


def test_a_closed_stream_too() -> None:
    clock, out = Clock(), io.StringIO()
    progress = Progress("audit", stream=out, clock=clock, interactive=True, width=80)
    out.close()
    run_job(progress, clock, seconds=1, step=0.05, per_step=1)
    progress.close()


def test_totals_learned_later_and_unknown_totals() -> None:
    clock = Clock()
    progress = Progress("audit", stream=io.StringIO(), clock=clock)
    assert progress.line() == "audit  0 objects  elapsed 0s"
    run_job(progress, clock, seconds=2, step=0.5, per_step=0)
    assert "ETA" not in progress.line()
    assert "2.0 objects/s" in progress.line()
    progress.set_totals(objects=8)
    assert "50%  4/8 objects" in progress.line()
    assert "ETA 2s" in progress.line()
