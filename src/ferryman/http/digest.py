"""Integrity fields of a request body: what the client claims its bytes hash to.

Four fields carry such claims (decisions/0020-digest-fields.md):

* `Content-Digest` and `Repr-Digest` (RFC 9530): Structured Field
  dictionaries whose member values are byte sequences,
  `sha-256=:BASE64:, sha-512=:BASE64:`; keys are lower case;
* `Digest` (RFC 3230, obsoleted by RFC 9530 but still sent):
  `SHA-256=BASE64, MD5=BASE64`, algorithm names in any case (RFC 5843 added
  SHA-256 and SHA-512);
* `Content-MD5` (RFC 1864): the base64 MD5 of the body.

The policy: every claim is either checked or refused, never ignored.

* ferryman checks the algorithms it computes: sha-256, sha-512 and md5 (in
  every field that can name it). Each claim of one of them becomes a `Claim`;
  a repeated one is checked as many times, so two values that disagree
  cannot both pass.
* Any other algorithm ("unknown": another registered one such as `sha`,
  `unixsum` or `crc32c`, or a name nobody registered) is passed over when
  the request also claims a digest ferryman checks: the body is verified
  all the same, as RFC 9530 lets a recipient choose. When nothing in the
  request can be checked, it is refused (400 `bad_digest`, naming the field
  and the algorithm, with `Want-Content-Digest` and `Want-Repr-Digest`):
  the client asked for a check that ferryman cannot make, and storing the
  bytes anyway would tell it they were verified.
* A malformed field is refused (400 `bad_digest`, naming the field), even
  beside a good one: a member that is not a byte sequence, an empty value,
  a value that is not base64, a digest of the wrong length.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Final, NamedTuple

from ferryman.errors import HttpError

# The algorithms ferryman computes (RFC 9530 keys) and their digest sizes.
CHECKED: Final = {"sha-256": 32, "sha-512": 64, "md5": 16}
# RFC 3230 algorithm names (compared in lower case) -> the same RFC 9530 key.
_RFC3230_NAMES: Final = {"sha-256": "sha-256", "sha-512": "sha-512", "md5": "md5"}
# What a refusal asks for instead (RFC 9530 section 4: preferences from 1 to 10).
WANT: Final = "sha-256=10, sha-512=5"

# RFC 8941 dictionary member: key "=" byte-sequence, then parameters (ignored).
_SF_MEMBER = re.compile(
    r"([a-z*][a-z0-9_.*-]*)=:([A-Za-z0-9+/=]*):"
    r'(?:;[ ]*[a-z*][a-z0-9_.*-]*(?:=(?:"(?:[^"\\]|\\["\\])*"|[^;,\s"]+))?)*'
)
_OWS_COMMA = re.compile(r"[ \t]*,[ \t]*")
# RFC 3230 instance-digest: token "=" encoded output (no comma, no whitespace).
_INSTANCE = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+)=([^\s,]+)")


class Claim(NamedTuple):
    """One digest the client claims for the body: which field, which algorithm, what value."""

    field: str  # as documented: "Content-Digest", "Repr-Digest", "Digest" or "Content-MD5"
    algorithm: str  # a key of CHECKED
    digest: bytes


def body_claims(headers: Mapping[str, str]) -> list[Claim]:
    """Every checkable digest the request claims for its body; 400 `bad_digest` when a
    field is malformed or the fields name only algorithms ferryman cannot compute.

    `headers` has lower-case names, repeated fields joined by ", " (as the
    parser gives them).
    """
    claims: list[Claim] = []
    unknown: list[str] = []
    if "content-md5" in headers:
        claims.append(Claim("Content-MD5", "md5", parse_content_md5(headers["content-md5"])))
    for name, field in (("content-digest", "Content-Digest"), ("repr-digest", "Repr-Digest")):
        if name in headers:
            _sf_claims(headers[name], field, claims, unknown)
    if "digest" in headers:
        _rfc3230_claims(headers["digest"], claims, unknown)
    if unknown and not claims:
        raise HttpError(
            400,
            "bad_digest",
            f"{', '.join(unknown)}: ferryman can check only sha-256, sha-512 and md5; "
            "nothing stored",
            (("Want-Content-Digest", WANT), ("Want-Repr-Digest", WANT)),
        )
    return claims


def parse_content_md5(value: str) -> bytes:
    """The 16 raw bytes of a Content-MD5 value (base64)."""
    return _decode(value.strip(), "Content-MD5", "md5", padded=True)


def parse_digest_field(value: str, field: str) -> dict[str, bytes]:
    """{algorithm: raw digest} for the checked algorithms of one RFC 9530 field.

    Refuses a malformed field; passes over unknown algorithms (body_claims
    decides whether that leaves anything to check).
    """
    claims: list[Claim] = []
    _sf_claims(value, field, claims, [])
    return {claim.algorithm: claim.digest for claim in claims}


def format_repr_digest(sha256: bytes) -> str:
    """`sha-256=:BASE64:` for a Repr-Digest (or Content-Digest) field."""
    return f"sha-256=:{base64.b64encode(sha256).decode('ascii')}:"


def _sf_claims(value: str, field: str, claims: list[Claim], unknown: list[str]) -> None:
    """Parse an RFC 9530 dictionary (RFC 8941 3.2) into `claims` and `unknown`."""
    text = value.strip(" \t")
    if not text:
        raise HttpError(400, "bad_digest", f"{field} is empty")
    pos = 0
    while True:
        match = _SF_MEMBER.match(text, pos)
        if match is None:
            raise HttpError(
                400, "bad_digest", f"{field} is not a dictionary of byte sequences (sha-256=:...:)"
            )
        algorithm, encoded = match.group(1), match.group(2)
        if algorithm in CHECKED:
            claims.append(Claim(field, algorithm, _decode(encoded, field, algorithm)))
        else:
            unknown.append(f"{field} {algorithm}")
        pos = match.end()
        if pos == len(text):
            return
        comma = _OWS_COMMA.match(text, pos)
        if comma is None or comma.end() == len(text):
            raise HttpError(
                400, "bad_digest", f"{field} is not a dictionary of byte sequences (sha-256=:...:)"
            )
        pos = comma.end()


def _rfc3230_claims(value: str, claims: list[Claim], unknown: list[str]) -> None:
    """Parse an RFC 3230 `Digest` field: `ALGORITHM=VALUE` members, names in any case."""
    members = [m.strip(" \t") for m in value.split(",")]
    if not any(members):
        raise HttpError(400, "bad_digest", "Digest is empty")
    for member in filter(None, members):  # RFC 9110 5.6.1: empty list elements are ignored
        match = _INSTANCE.fullmatch(member)
        if match is None:
            raise HttpError(400, "bad_digest", "Digest is not a list of ALGORITHM=VALUE (RFC 3230)")
        name, encoded = match.group(1), match.group(2)
        algorithm = _RFC3230_NAMES.get(name.lower())
        if algorithm is None:
            unknown.append(f"Digest {name}")
        else:
            claims.append(Claim("Digest", algorithm, _decode(encoded, "Digest", algorithm)))


def _decode(text: str, field: str, algorithm: str, *, padded: bool = False) -> bytes:
    """The raw digest in base64 `text`, of the size `algorithm` makes; else 400.

    RFC 8941 asks parsers to accept a byte sequence without its "=" padding,
    so it is added back (except where `padded`: Content-MD5 is plain base64).
    """
    if not padded:
        text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise HttpError(400, "bad_digest", f"{field} {algorithm} is not valid base64") from None
    if len(raw) != CHECKED[algorithm]:
        raise HttpError(
            400,
            "bad_digest",
            f"{field} {algorithm} must be {CHECKED[algorithm]} bytes, base64-encoded",
        )
    return raw
