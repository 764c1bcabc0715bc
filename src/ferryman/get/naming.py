"""Where a download is saved: the URL's last segment, made safe, or what -o says.

The name comes from the server's side of the URL, so it is treated as
hostile: percent-decoded once, then every path separator, NUL and control
character becomes "_", and leading dots are dropped (no hidden file, no
"." or ".."). What is left is one name in the current directory, or the URL
names no file and -o is needed. Only -o can put the file elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote_to_bytes, urlsplit

from ferryman.errors import ConfigError

MAX_NAME_BYTES = 255  # NAME_MAX of Linux filesystems
_UNSAFE = {"/", "\\", "\0"}


def name_from_url(url: str) -> str:
    """The file name a URL's last path segment gives, safe to create in the current directory.

    Raises ConfigError when nothing usable is left (then -o PATH is needed).
    """
    path = urlsplit(url).path
    segment = path.rpartition("/")[2]
    try:
        decoded = unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{url}: its last segment is not UTF-8; give -o PATH") from None
    name = safe_name(decoded)
    if not name:
        raise ConfigError(f"{shown_url(url)} names no file (its path ends in {segment or '/'!r});"
                          " give -o PATH")  # fmt: skip
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise ConfigError(
            f"the URL's file name is longer than {MAX_NAME_BYTES} bytes; give -o PATH"
        )
    return name


def safe_name(text: str) -> str:
    """`text` as one harmless file name: separators and control characters replaced,
    leading dots and surrounding blanks removed ("" when nothing is left)."""
    cleaned = "".join("_" if c in _UNSAFE or ord(c) < 0x20 or ord(c) == 0x7F else c for c in text)
    return cleaned.strip().lstrip(".").strip()


def output_path(url: str, option: str | None) -> Path:
    """The path the download ends at: -o as given (a directory gets the URL's name inside
    it), else the URL's name in the current directory."""
    if option is None:
        return Path(name_from_url(url))
    if option.endswith(os.sep) or os.path.isdir(option):
        return Path(option) / name_from_url(url)
    return Path(option)


def shown_url(url: str) -> str:
    """A URL without its query: a signed URL's signature is not for messages or logs."""
    parts = urlsplit(url)
    shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
    return shown + ("?..." if parts.query else "")
