"""How far a long job is: objects and bytes done of their totals, the rate, the time left.

For audits and repairs (and any long client job). On a terminal the line is
redrawn in place (a carriage return, at most ten times a second, cut to the
terminal's width) and erased at the end, so the summary that follows starts
on a clean line. Anywhere else (a log file, a pipe, systemd's journal) it
is one plain line a minute, and a last one at the end if any was written: a
log never fills with progress.

The clock and the stream are parameters, so tests drive it without a
terminal or real time. It never raises into the job: a stream that fails
(closed, EPIPE) only ends the display. One Progress belongs to one thread or
event loop. Between advances nothing is redrawn: a job that may wait long
without progress calls tick() from its own timer.

The pieces (format_size, format_duration, smooth, eta) are pure.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
REDRAW_EVERY = 0.1  # seconds between redraws on a terminal
LOG_EVERY = 60.0  # seconds between lines anywhere else
SAMPLE_EVERY = 0.5  # seconds between samples of the rate
RATE_WINDOW = 10.0  # seconds: the rate is an exponential average over about this long
DEFAULT_WIDTH = 80


def format_size(n: float) -> str:
    """A byte count in binary units: '0 B', '1023 B', '1.5 KiB', '12.3 MiB', '512 GiB'.

    At most 4 significant characters before the unit; 1023.6 MiB is '1.0 GiB', never '1024 MiB'.
    """
    if n < 1024:
        return f"{max(0, int(n))} B"
    value = float(n)
    unit = 0
    while unit < len(SIZE_UNITS) - 1 and round(value, 1 if value < 100 else 0) >= 1024:
        value /= 1024
        unit += 1
    if round(value, 1) < 100:
        return f"{value:.1f} {SIZE_UNITS[unit]}"
    return f"{value:.0f} {SIZE_UNITS[unit]}"


def format_rate(per_second: float, unit: str = "bytes") -> str:
    if unit == "bytes":
        return format_size(per_second) + "/s"
    if per_second < 10:
        return f"{per_second:.1f} {unit}/s"
    return f"{per_second:,.0f} {unit}/s"


def format_duration(seconds: float) -> str:
    """'0s' .. '59s', '1m05s', '2h07m', '3d04h', '>99d'; '?' when not a finite duration."""
    if not math.isfinite(seconds):
        return "?"
    whole = max(0, round(seconds))
    if whole >= 100 * 86400:
        return ">99d"
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def smooth(previous: float | None, amount: float, elapsed: float, window: float) -> float:
    """The rate after `amount` more was done in `elapsed` seconds.

    An exponential average whose weights fade over about `window` seconds,
    weighted by time rather than by sample, so uneven sampling does not skew
    it. The first sample is taken as it is.
    """
    if elapsed <= 0:
        return previous if previous is not None else 0.0
    current = amount / elapsed
    if previous is None:
        return current
    # A weighted mean of the two, so the result always lies between them.
    keep = math.exp(-elapsed / window)
    return previous * keep + current * -math.expm1(-elapsed / window)


def eta(remaining: float, rate: float | None) -> float | None:
    """Seconds left at `rate`; None when the rate says nothing (unknown or zero)."""
    if remaining <= 0:
        return 0.0
    if rate is None or rate <= 0:
        return None
    return remaining / rate


class Progress:
    """One job's progress line on `stream` (stderr by default)."""

    def __init__(
        self,
        label: str,
        *,
        objects_total: int | None = None,
        bytes_total: int | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        interactive: bool | None = None,
        width: int | None = None,
        redraw_every: float = REDRAW_EVERY,
        log_every: float = LOG_EVERY,
        counts_objects: bool = True,
        bytes_done: int = 0,
    ) -> None:
        """`counts_objects=False` leaves objects out of the line (one file's download);
        `bytes_done` were done before this job started (a resumed download): they count
        towards the total, not the rate."""
        self.label = label
        self.objects_total = objects_total
        self.bytes_total = bytes_total
        self.counts_objects = counts_objects
        self.objects = 0
        self.bytes = bytes_done
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._interactive = _is_terminal(self._stream) if interactive is None else interactive
        self._width = width
        self._every = redraw_every if self._interactive else log_every
        self._started = clock()
        self._last_output = self._started
        self._sample_at = self._started
        self._sample_objects = 0
        self._sample_bytes = bytes_done
        self.object_rate: float | None = None
        self.byte_rate: float | None = None
        self._drawn = 0  # characters of the line now on the terminal
        self._lines = 0  # lines written to a non-terminal
        self._broken = False
        self._closed = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def set_totals(self, objects: int | None = None, nbytes: int | None = None) -> None:
        """Totals learned later (a listing that finished); None keeps the one known."""
        if objects is not None:
            self.objects_total = objects
        if nbytes is not None:
            self.bytes_total = nbytes

    def advance(self, objects: int = 0, nbytes: int = 0) -> None:
        """`objects` more done and `nbytes` more read; redraws when it is time."""
        self.objects += objects
        self.bytes += nbytes
        self.tick()

    def tick(self) -> None:
        """Take a rate sample and redraw, if it is time for either."""
        if self._closed:
            return
        now = self._clock()
        if now - self._sample_at >= SAMPLE_EVERY:
            self._sample(now)
        if now - self._last_output >= self._every:
            self._last_output = now
            self._show(self.line(now))

    def line(self, now: float | None = None) -> str:
        """The status line: 'audit 42% 4,200/10,000 objects 1.2 GiB/3.0 GiB 85.3 MiB/s ETA 21s'."""
        now = self._clock() if now is None else now
        parts = [self.label]
        fraction, left = self._fraction_and_eta()
        if fraction is not None:
            parts.append(f"{math.floor(fraction * 100)}%")
        if not self.counts_objects:
            pass
        elif self.objects_total is not None:
            parts.append(f"{self.objects:,}/{self.objects_total:,} objects")
        else:
            parts.append(f"{self.objects:,} objects")
        if self.bytes_total:
            parts.append(f"{format_size(self.bytes)}/{format_size(self.bytes_total)}")
        elif self.bytes:
            parts.append(format_size(self.bytes))
        if self.bytes_total or self.bytes:
            if self.byte_rate is not None:
                parts.append(format_rate(self.byte_rate))
        elif self.object_rate is not None:
            parts.append(format_rate(self.object_rate, "objects"))
        if left is not None:
            parts.append(f"ETA {format_duration(left)}")
        parts.append(f"elapsed {format_duration(now - self._started)}")
        return "  ".join(parts)

    def close(self) -> None:
        """Erase the line on a terminal; elsewhere, a last line if any was written."""
        if self._closed:
            return
        self._closed = True
        if self._interactive and self._drawn:
            self._write("\r" + " " * self._drawn + "\r")
        elif not self._interactive and self._lines:
            now = self._clock()
            self._sample(now)
            self._write(f"{self.line(now)}  done\n")

    def _sample(self, now: float) -> None:
        elapsed = now - self._sample_at
        if elapsed <= 0:
            return
        done_objects = self.objects - self._sample_objects
        done_bytes = self.bytes - self._sample_bytes
        self.object_rate = smooth(self.object_rate, done_objects, elapsed, RATE_WINDOW)
        self.byte_rate = smooth(self.byte_rate, done_bytes, elapsed, RATE_WINDOW)
        self._sample_at, self._sample_objects, self._sample_bytes = now, self.objects, self.bytes

    def _fraction_and_eta(self) -> tuple[float | None, float | None]:
        """How much is done and the seconds left, by bytes when their total is known."""
        if self.bytes_total:
            done, total, rate = self.bytes, self.bytes_total, self.byte_rate
        elif self.objects_total:
            done, total, rate = self.objects, self.objects_total, self.object_rate
        else:
            return None, None
        return min(1.0, done / total), eta(total - done, rate)

    def _show(self, text: str) -> None:
        if not self._interactive:
            self._lines += 1
            self._write(text + "\n")
            return
        width = self._width if self._width is not None else _terminal_width(self._stream)
        # One column short of the width: a full line would wrap on some terminals.
        room = max(1, width - 1)
        text = text[:room]
        self._write("\r" + text.ljust(min(self._drawn, room)))
        self._drawn = len(text)

    def _write(self, text: str) -> None:
        if self._broken:
            return
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            self._broken = True  # a closed or broken stream ends the display, not the job


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False


def _terminal_width(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns or DEFAULT_WIDTH
    except (OSError, ValueError, AttributeError):
        return DEFAULT_WIDTH
