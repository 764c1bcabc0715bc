"""Integrity fields: Content-MD5, RFC 3230 Digest, RFC 9530 dictionaries; checked or refused."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.errors import HttpError
from ferryman.http.digest import (
    Claim,
    body_claims,
    format_repr_digest,
    parse_content_md5,
    parse_digest_field,
)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


S256, S512, MD5 = (
    hashlib.sha256(b"x").digest(),
    hashlib.sha512(b"x").digest(),
    hashlib.md5(b"x").digest(),
)


def refused(headers: dict[str, str]) -> HttpError:
    with pytest.raises(HttpError) as info:
        body_claims(headers)
    assert (info.value.status, info.value.error) == (400, "bad_digest"), info.value.detail
    return info.value


@given(st.binary(max_size=2000))
def test_round_trip(data: bytes) -> None:
    sha256 = hashlib.sha256(data).digest()
    assert parse_digest_field(format_repr_digest(sha256), "Repr-Digest") == {"sha-256": sha256}
    assert parse_content_md5(b64(hashlib.md5(data).digest())) == hashlib.md5(data).digest()


def test_dictionary_members() -> None:
    field = f"sha-512=:{b64(S512)}:, unixsum=:AAA=:, sha-256=:{b64(S256)}:;p=1"
    assert parse_digest_field(field, "Content-Digest") == {"sha-512": S512, "sha-256": S256}
    # md5 is registered (deprecated) and ferryman computes it: checked, not skipped
    assert parse_digest_field(f"md5=:{b64(MD5)}:", "Content-Digest") == {"md5": MD5}


@pytest.mark.parametrize(
    "field",
    [
        "", " , ", "sha-256", "sha-256=", "sha-256=abc", "sha-256=:not base64!:",
        "sha-256=:AAAA:", "SHA-256=:x:", f"sha-256=:{b64(S256)}", f"sha-256={b64(S256)}",
        f"sha-256=:{b64(S256)}:,", f"sha-256=:{b64(S256)}: sha-512=:{b64(S512)}:",
        f"sha-256=:{b64(S256)}:;", "unixsum=zzz", "md5=:AAAA:",
        f'sha-256=:{b64(S256)}:;p="unterminated',
    ],
)  # fmt: skip
def test_malformed_fields_are_400(field: str) -> None:
    for name, shown in (("content-digest", "Content-Digest"), ("repr-digest", "Repr-Digest")):
        assert shown in refused({name: field}).detail


def test_parameters_and_missing_padding_are_accepted() -> None:
    unpadded = b64(MD5).rstrip("=")  # RFC 8941: parsers should accept a byte sequence unpadded
    field = f'sha-256=:{b64(S256)}:;a=1;b="x,y";c=?0 ,\tmd5=:{unpadded}:'
    assert body_claims({"content-digest": field}) == [
        Claim("Content-Digest", "sha-256", S256),
        Claim("Content-Digest", "md5", MD5),
    ]


@pytest.mark.parametrize("value", ["", "AAAA", "!!!", b64(b"x" * 15), b64(MD5).rstrip("=")])
def test_malformed_md5_is_400(value: str) -> None:
    assert "Content-MD5" in refused({"content-md5": value}).detail


def test_every_field_gives_its_claims() -> None:
    claims = body_claims({
        "content-md5": b64(MD5),
        "content-digest": f"sha-256=:{b64(S256)}:",
        "repr-digest": f"sha-512=:{b64(S512)}:",
        "digest": f"SHA-256={b64(S256)}, md5={b64(MD5)},Sha-512={b64(S512)}",
    })  # fmt: skip
    assert claims == [
        Claim("Content-MD5", "md5", MD5),
        Claim("Content-Digest", "sha-256", S256),
        Claim("Repr-Digest", "sha-512", S512),
        Claim("Digest", "sha-256", S256),
        Claim("Digest", "md5", MD5),
        Claim("Digest", "sha-512", S512),
    ]
    assert body_claims({}) == []
    assert body_claims({"accept": "*/*"}) == []


def test_repeated_members_are_each_checked() -> None:
    """Two values for one algorithm cannot both match: neither is dropped."""
    other = hashlib.sha256(b"y").digest()
    field = f"sha-256=:{b64(S256)}:, sha-256=:{b64(other)}:"
    assert [c.digest for c in body_claims({"repr-digest": field})] == [S256, other]


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"content-digest": "unixsum=:AAAA:"}, "Content-Digest unixsum"),
        ({"repr-digest": "crc32c=:AAAAAA==:, sha=:AAAA:"}, "Repr-Digest crc32c"),
        ({"digest": "UNIXsum=1234"}, "Digest UNIXsum"),
        ({"digest": "SHA=" + b64(hashlib.sha1(b"x").digest())}, "Digest SHA"),
        ({"digest": "id-sha-256=" + b64(S256)}, "Digest id-sha-256"),
    ],
)
def test_only_unknown_algorithms_are_refused(headers: dict[str, str], named: str) -> None:
    error = refused(headers)
    assert named in error.detail and "sha-256" in error.detail
    assert ("Want-Repr-Digest", "sha-256=10, sha-512=5") in error.headers


def test_unknown_algorithms_beside_a_checked_one_are_passed_over() -> None:
    headers = {"content-digest": "unixsum=:AAAA:", "digest": f"UNIXcksum=1, SHA-256={b64(S256)}"}
    assert body_claims(headers) == [Claim("Digest", "sha-256", S256)]
    headers = {"repr-digest": "adler=:AAAA:", "content-md5": b64(MD5)}
    assert body_claims(headers) == [Claim("Content-MD5", "md5", MD5)]


@pytest.mark.parametrize(
    "value",
    ["", " ", ",", "SHA-256", "SHA-256=", "=abc", "SHA 256=abc", "SHA-256=a b",
     "SHA-256=!!!!", "SHA-256=AAAA", f"MD5={b64(S256)}", f"SHA-256=:{b64(S256)}:"],
)  # fmt: skip
def test_malformed_rfc3230_digest_is_400(value: str) -> None:
    assert "Digest" in refused({"digest": value}).detail


def test_rfc3230_empty_list_elements_are_ignored() -> None:
    assert body_claims({"digest": f" , SHA-512={b64(S512)},,"}) == [
        Claim("Digest", "sha-512", S512)
    ]


_FIELD_TEXT = st.text(alphabet='sha-256md5SHA=:,; \t"AZaz09+/!*.', max_size=60)


@given(st.sampled_from(["content-digest", "repr-digest", "digest", "content-md5"]), _FIELD_TEXT)
def test_any_field_text_is_claims_or_400(name: str, value: str) -> None:
    """Whatever the text: checkable claims of the right size, or a 400 naming the field."""
    try:
        claims = body_claims({name: value})
    except HttpError as exc:
        assert (exc.status, exc.error) == (400, "bad_digest")
        return
    sizes = {"sha-256": 32, "sha-512": 64, "md5": 16}
    assert all(len(c.digest) == sizes[c.algorithm] for c in claims)
