"""Integrity fields: Content-MD5 and RFC 9530 digest dictionaries."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.errors import HttpError
from ferryman.http.digest import format_repr_digest, parse_content_md5, parse_digest_field


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@given(st.binary(max_size=2000))
def test_round_trip(data: bytes) -> None:
    sha256 = hashlib.sha256(data).digest()
    assert parse_digest_field(format_repr_digest(sha256), "Repr-Digest") == {"sha-256": sha256}
    assert parse_content_md5(b64(hashlib.md5(data).digest())) == hashlib.md5(data).digest()


def test_dictionary_members() -> None:
    s256, s512 = hashlib.sha256(b"x").digest(), hashlib.sha512(b"x").digest()
    field = f"sha-512=:{b64(s512)}:, unixsum=:AAA=:, sha-256=:{b64(s256)}:;p=1"
    assert parse_digest_field(field, "Content-Digest") == {"sha-512": s512, "sha-256": s256}
    assert parse_digest_field("md5=:AAAA:", "Content-Digest") == {}  # nothing we can check


@pytest.mark.parametrize(
    "field",
    ["", " , ", "sha-256", "sha-256=abc", "sha-256=:not base64!:", "sha-256=:AAAA:", "SHA-256=:x:"],
)
def test_malformed_fields_are_400(field: str) -> None:
    with pytest.raises(HttpError) as info:
        parse_digest_field(field, "Content-Digest")
    assert info.value.status == 400


@pytest.mark.parametrize("value", ["", "AAAA", "!!!", b64(b"x" * 15)])
def test_malformed_md5_is_400(value: str) -> None:
    with pytest.raises(HttpError):
        parse_content_md5(value)
