"""Which media types are worth compressing: the one list ferryman consults.

Text compresses to a fraction of its size; images, video, audio, archives and
woff/woff2 fonts are compressed already, and coding them again costs CPU for
nothing. A type is compressible when it is `text/*`, a structured `+json` or
`+xml` type, or one of the types below; everything else (unknown types, sent
as `application/octet-stream`, included) is sent as it is.
"""

from __future__ import annotations

from functools import lru_cache

COMPRESSIBLE = frozenset(
    (
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/json",
        "application/x-ndjson",
        "application/xml",
        "application/xhtml+xml",
        "application/wasm",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/x-sh",
        "application/x-csh",
        "application/x-tex",
        "application/x-latex",
        "application/postscript",
        "application/rtf",
        "application/vnd.ms-fontobject",
        "application/x-font-ttf",
        "application/x-font-otf",
        "application/vnd.apple.mpegurl",
        "application/x-mpegurl",
        "application/graphql",
        "application/sql",
        "font/ttf",
        "font/otf",
        "font/collection",
        "image/svg+xml",
        "image/x-icon",
        "image/vnd.microsoft.icon",
        "image/bmp",
    )
)


@lru_cache(maxsize=256)
def compressible(content_type: str) -> bool:
    """Whether a body of this Content-Type (parameters allowed) is worth compressing."""
    kind = content_type.partition(";")[0].strip().lower()
    return (
        kind.startswith("text/")
        or kind in COMPRESSIBLE
        or kind.endswith("+json")
        or kind.endswith("+xml")
    )
