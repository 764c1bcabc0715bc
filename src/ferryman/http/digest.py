"""Integrity fields: Content-MD5 (RFC 1864) and Content-Digest / Repr-Digest (RFC 9530).

RFC 9530 fields are Structured Field dictionaries whose members are byte
sequences: `sha-256=:BASE64:, sha-512=:BASE64:`. Only the algorithms ferryman
can check are kept (sha-256, sha-512); unknown ones are ignored, as the RFC
allows. A malformed field is an error, not "no digest": a client that asked
for a check must not get an unchecked write.
"""

from __future__ import annotations

import base64
import binascii
import re

from ferryman.errors import HttpError

SUPPORTED = ("sha-256", "sha-512")
_DIGEST_SIZES = {"sha-256": 32, "sha-512": 64}
_MEMBER = re.compile(r"\s*([a-z][a-z0-9_.*-]*)\s*=\s*:([A-Za-z0-9+/=]*):\s*(?:;[^,]*)?\s*")


def parse_content_md5(value: str) -> bytes:
    """The 16 raw bytes of a Content-MD5 value (base64)."""
    raw = _b64(value.strip(), "Content-MD5")
    if len(raw) != 16:
        raise HttpError(400, "bad_digest", "Content-MD5 must be 16 bytes, base64-encoded")
    return raw


def parse_digest_field(value: str, field: str) -> dict[str, bytes]:
    """{algorithm: raw digest} for the supported algorithms in a RFC 9530 field."""
    found: dict[str, bytes] = {}
    for member in _split_members(value):
        match = _MEMBER.fullmatch(member)
        if match is None:
            raise HttpError(400, "bad_digest", f"{field} is not a valid digest dictionary")
        algorithm, encoded = match.group(1), match.group(2)
        if algorithm not in _DIGEST_SIZES:
            continue
        raw = _b64(encoded, field)
        if len(raw) != _DIGEST_SIZES[algorithm]:
            raise HttpError(400, "bad_digest", f"{field} {algorithm} has the wrong length")
        found[algorithm] = raw
    return found


def format_repr_digest(sha256: bytes) -> str:
    """`sha-256=:BASE64:` for a Repr-Digest (or Content-Digest) field."""
    return f"sha-256=:{base64.b64encode(sha256).decode('ascii')}:"


def _split_members(value: str) -> list[str]:
    members = [m for m in value.split(",") if m.strip()]
    if not members:
        raise HttpError(400, "bad_digest", "empty digest field")
    return members


def _b64(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise HttpError(400, "bad_digest", f"{field} is not valid base64") from None
