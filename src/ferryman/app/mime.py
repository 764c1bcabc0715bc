"""Content-Type from a file name: Python's built-in table (never the host's
/etc/mime.types, so every machine answers the same) plus media types the
table lacks, with charset=utf-8 for text."""

from __future__ import annotations

import mimetypes
from functools import lru_cache

_TABLE = mimetypes.MimeTypes()  # defaults only: no system files read
_EXTRA = {
    ".md": "text/markdown", ".mjs": "text/javascript", ".wasm": "application/wasm",
    ".webm": "video/webm", ".mkv": "video/x-matroska", ".m4v": "video/mp4",
    ".m4a": "audio/mp4", ".flac": "audio/flac", ".ogg": "audio/ogg", ".opus": "audio/ogg",
    ".webp": "image/webp", ".avif": "image/avif", ".woff2": "font/woff2", ".woff": "font/woff",
    ".ts": "video/mp2t", ".m3u8": "application/vnd.apple.mpegurl", ".yaml": "text/yaml",
    ".yml": "text/yaml", ".toml": "text/plain", ".log": "text/plain", ".tar": "application/x-tar",
    ".gz": "application/gzip", ".tgz": "application/gzip", ".zst": "application/zstd",
    ".ttf": "font/ttf", ".otf": "font/otf",
}  # fmt: skip
_TEXTUAL = ("application/javascript", "application/json", "application/xml", "image/svg+xml")
DEFAULT = "application/octet-stream"


@lru_cache(maxsize=1024)
def content_type(name: str) -> str:
    dot = name.rfind(".")
    ext = name[dot:].lower() if dot > 0 else ""
    kind = _EXTRA.get(ext) or _TABLE.types_map[True].get(ext) or DEFAULT
    if kind.startswith("text/") or kind in _TEXTUAL:
        return f"{kind}; charset=utf-8"
    return kind
