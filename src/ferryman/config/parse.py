"""What a setting takes: sizes, durations, numbers, switches, choices, locations.

Each parser takes what a flag or the environment gives (text) or what a
TOML file gives (text or a native value) and returns the typed value, or
raises ConfigError saying what was wrong; nothing else escapes, whatever
the input. A `Kind` pairs a parser with how the docs and `--help` show a
value of it, so that a default is written once, as a value.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Generic, TypeVar

from ferryman.errors import ConfigError
from ferryman.http.cors import normal_origin

T = TypeVar("T")

SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kb": 1000, "kib": 1024,
    "m": 1024**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1024**3, "gb": 1000**3, "gib": 1024**3,
    "t": 1024**4, "tb": 1000**4, "tib": 1024**4,
}  # fmt: skip
DURATION_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_WORKERS = 1024  # far above any useful count; catches a typo like 40000
MAX_SIZE = 2**63 - 1  # the largest file offset (off_t); a TOML integer cannot pass it either
_NUMBER_WITH_UNIT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def parse_size(text: object) -> int:
    """'64KiB', '8k', '1M', '100' -> bytes (k/m/g without 'B' are binary, as in nginx).

    A decimal part is exact ('1.005kb' is 1005 bytes), then rounded down."""
    wrong = f"invalid size {text!r} (examples: 512, 64KiB, 8k, 1M, 2GB)"
    if isinstance(text, int) and not isinstance(text, bool):
        return int(_non_negative(text, "size"))
    digits, unit = _number_with_unit(text, SIZE_UNITS, wrong)
    size = int(Fraction(digits) * SIZE_UNITS[unit])
    if size > MAX_SIZE:
        raise ConfigError(f"size {text!r} is too large: at most {MAX_SIZE} bytes")
    return size


def parse_duration(text: object) -> float:
    """'30s', '500ms', '1h', '2.5' -> seconds."""
    wrong = f"invalid duration {text!r} (examples: 30s, 500ms, 5m, 1h)"
    if isinstance(text, int | float) and not isinstance(text, bool):
        if not math.isfinite(text):  # TOML has inf and nan
            raise ConfigError(wrong)
        return float(_non_negative(text, "duration"))
    digits, unit = _number_with_unit(text, DURATION_UNITS, wrong)
    seconds = float(digits) * DURATION_UNITS[unit]
    if not math.isfinite(seconds):  # more digits than a float holds
        raise ConfigError(wrong)
    return seconds


def _number_with_unit(text: object, units: dict[str, Any], wrong: str) -> tuple[str, str]:
    """The digits and the (lower-case) unit of `12.5 KiB`; ConfigError(wrong) if it is
    not one."""
    match = _NUMBER_WITH_UNIT.fullmatch(text) if isinstance(text, str) else None
    if not match or match.group(2).lower() not in units:
        raise ConfigError(wrong)
    return match.group(1), match.group(2).lower()


def parse_positive_duration(text: object) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise ConfigError(f"a duration above zero is needed, not {text!r}")
    return value


def parse_bool(text: object) -> bool:
    if isinstance(text, bool):
        return text
    value = text.strip().lower() if isinstance(text, str) else None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"invalid boolean {text!r} (use on/off, true/false)")


def _whole_number(text: object) -> int:
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise ValueError(text)
    return int(text)


def parse_port(text: object) -> int:
    try:
        port = _whole_number(text)
    except ValueError:
        raise ConfigError(f"invalid port {text!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} out of range 0-65535")
    return port


def _at_least(text: object, minimum: int) -> int:
    try:
        value = _whole_number(text)
    except ValueError:
        raise ConfigError(f"invalid number {text!r}") from None
    if value < minimum:
        raise ConfigError(f"{value} must be at least {minimum}")
    return value


def parse_positive_int(text: object) -> int:
    return _at_least(text, 1)


def parse_count(text: object) -> int:
    """A whole number of at least 0 (for --max-restarts, where 0 means "never restart")."""
    return _at_least(text, 0)


def parse_workers(text: object) -> int:
    """A number of worker processes, or 'auto': one per CPU this process may run on."""
    if isinstance(text, str) and text.strip().lower() == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    try:
        value = _whole_number(text)
    except ValueError:
        raise ConfigError(f"invalid number of workers {text!r} (a number or 'auto')") from None
    if not 1 <= value <= MAX_WORKERS:
        raise ConfigError(f"{value} workers: use 1 to {MAX_WORKERS}, or 'auto'")
    return value


def parse_locations(value: object) -> tuple[str, ...]:
    """Directories or s3:// URLs: a list (flags, TOML), or one string of several
    separated by whitespace (the environment)."""
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"expected directories or s3:// URLs, not {value!r}")
    return tuple(item for item in items if item)


def parse_origins(value: object) -> tuple[str, ...]:
    """Origins (`scheme://host[:port]`) or `*`: a list (flags, TOML), or one string of
    several separated by whitespace (the environment); each as a browser writes it."""
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"expected origins (scheme://host[:port]) or '*', not {value!r}")
    origins: list[str] = []
    for item in items:
        try:
            origins.append(normal_origin(item.strip()))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return tuple(dict.fromkeys(origins))


def parse_text(value: object) -> str:
    return str(value)


def parse_optional_text(value: object) -> str | None:
    """Text, where nothing (an empty environment variable) means "none"."""
    return str(value) if value not in (None, "") else None


def _non_negative(value: int | float, what: str) -> int | float:
    if value < 0:
        raise ConfigError(f"a {what} cannot be negative: {value}")
    return value


# -- how a value is shown (defaults in --help and docs/configuration.md) --------------------


def show_size(size: int) -> str:
    """Bytes in the largest binary unit that holds them exactly: 8KiB, 16GiB, 1000."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        factor = SIZE_UNITS[unit.lower()]
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def show_duration(seconds: float) -> str:
    """Whole days or hours when exact, else seconds (never 'm', which reads as MiB too)."""
    for unit in ("d", "h", "s", "ms"):
        count = seconds / DURATION_UNITS[unit]
        if seconds and count == int(count):
            return f"{int(count)}{unit}"
    return f"{seconds}s" if seconds else "0s"


def show_bool(value: bool) -> str:
    return "on" if value else "off"


def show_optional(value: object) -> str:
    return "none" if value in (None, ()) else str(value)


@dataclass(frozen=True)
class Kind(Generic[T]):
    """What a setting takes: how text (or a TOML value) becomes its value, how a value
    is shown, and how the docs name it."""

    takes: str  # for the docs, markdown: "a size", "`combined` or `json`"
    parse: Callable[[object], T]
    show: Callable[[T], str] = str
    many: bool = False  # a list: the flag repeats, the environment separates by whitespace


def one_of(*allowed: str) -> Kind[str]:
    def parse(text: object) -> str:
        if text not in allowed:
            raise ConfigError(f"{text!r} is not one of {', '.join(allowed)}")
        return str(text)

    names = [f"`{name}`" for name in allowed]
    return Kind(" or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names), parse)


def optional(takes: str) -> Kind[str | None]:
    """Text that may be absent (a file, a directory, a URL); empty means absent."""
    return Kind(takes, parse_optional_text, show_optional)


TEXT: Kind[str] = Kind("text", parse_text)
SWITCH: Kind[bool] = Kind("on or off", parse_bool, show_bool)
SIZE: Kind[int] = Kind("a size", parse_size, show_size)
DURATION: Kind[float] = Kind("a duration", parse_duration, show_duration)
POSITIVE_DURATION: Kind[float] = Kind("a duration above zero", parse_positive_duration,
                                      show_duration)  # fmt: skip
COUNT: Kind[int] = Kind("a whole number, 0 or more", parse_count)
POSITIVE: Kind[int] = Kind("a whole number, at least 1", parse_positive_int)
PORT: Kind[int] = Kind("0 to 65535", parse_port)
WORKERS: Kind[int] = Kind(f"1 to {MAX_WORKERS}, or `auto`", parse_workers)
LOCATIONS: Kind[tuple[str, ...]] = Kind("directories or `s3://` URLs", parse_locations,
                                        show_optional, many=True)  # fmt: skip
ORIGINS: Kind[tuple[str, ...]] = Kind("origins (`scheme://host[:port]`) or `*`", parse_origins,
                                      show_optional, many=True)  # fmt: skip


CODINGS = ("zstd", "br", "gzip")


def parse_codings(value: object) -> tuple[str, ...]:
    """`none`, or codings among zstd, br and gzip: `zstd,gzip` (flags, the environment),
    or a TOML list; the server's order (zstd, br, gzip) is kept whatever the order given."""
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"expected `none` or codings among zstd, br, gzip, not {value!r}")
    names = [item.strip().lower() for item in items if item.strip()]
    if names in (["none"], []):
        return ()
    wrong = [name for name in names if name not in CODINGS]
    if wrong:
        raise ConfigError(f"unknown coding {wrong[0]!r}: use `none` or any of zstd, br, gzip")
    return tuple(c for c in CODINGS if c in names)


def show_codings(value: tuple[str, ...]) -> str:
    return ",".join(value) if value else "none"


CODING_LIST: Kind[tuple[str, ...]] = Kind("`none`, or a list of `zstd`, `br`, `gzip`",
                                          parse_codings, show_codings)  # fmt: skip
