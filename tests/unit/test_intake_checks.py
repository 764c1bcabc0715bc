"""What every write checks before it stores anything: the name, and every digest claimed."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.app.intake import BodyChecks, write_path
from ferryman.errors import HttpError
from tests.builders import request, unparsed_request


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


CONTROL = [chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]]


@pytest.mark.parametrize("char", CONTROL, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_control_characters_in_names_to_write_are_400(char: str, method: str) -> None:
    for name in (f"a{char}b.txt", f"dir{char}/f.txt", f"{char}"):
        with pytest.raises(HttpError) as info:
            write_path(request(method, "/" + quote(name.encode())))
        assert (info.value.status, info.value.error) == (400, "bad_path")
        assert "control characters" in info.value.detail or char == "\x00"  # resolve(): NUL


@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/"),
        min_size=1,
        max_size=20,
    )
)
def test_other_names_pass(name: str) -> None:
    target = "/w/" + quote(name.encode(), safe="")
    try:
        path = write_path(request("PUT", target))
    except HttpError as exc:  # dot names (404), ".." (the directory: 405): not this check
        assert exc.status in (404, 405) and name.startswith(".")
        return
    assert path.segments[-1] == name or name in (".", "..")


def test_names_that_are_not_files_or_not_utf8() -> None:
    assert write_path(unparsed_request("PUT", b"/a/caf%C3%A9 \xe2\x80\x94 1.txt")).segments == (
        "a",
        "café — 1.txt",
    )
    for target, status in (("/%FF.bin", 400), ("/dir/", 405), ("/", 405), ("/" + "n" * 256, 400)):
        with pytest.raises(HttpError) as info:
            write_path(request("PUT", target))
        assert info.value.status == status


def test_every_claim_is_verified_and_a_mismatch_names_its_field() -> None:
    body = b"the body"
    good = {
        "Content-MD5": b64(hashlib.md5(body).digest()),
        "Content-Digest": f"sha-512=:{b64(hashlib.sha512(body).digest())}:",
        "Digest": f"SHA-256={b64(hashlib.sha256(body).digest())}",
    }
    checks = BodyChecks.from_request(request("PUT", "/f", good, body))
    assert set(checks.hashers) == {"sha-256", "sha-512", "md5"}
    checks.update(b"the ")
    checks.update(bytearray(b"body"))
    checks.verify()
    assert checks.sha256 == hashlib.sha256(body).digest()
    for field in ("Content-MD5", "Content-Digest", "Digest"):
        checks = BodyChecks.from_request(request("PUT", "/f", good, body))
        checks.update(b"other body")
        with pytest.raises(HttpError) as info:
            checks.verify()
        assert (info.value.status, info.value.error) == (400, "digest_mismatch")
        assert info.value.detail.startswith("Content-MD5")  # the first claim checked fails first
        alone = BodyChecks.from_request(request("PUT", "/f", {field: good[field]}, body))
        alone.update(b"other body")
        with pytest.raises(HttpError) as info:
            alone.verify()
        assert info.value.detail.startswith(field)


def test_sha256_is_computed_without_any_claim() -> None:
    checks = BodyChecks.from_request(request("PUT", "/f", body=b"x"))
    checks.update(b"x")
    checks.verify()
    assert checks.claims == [] and checks.sha256 == hashlib.sha256(b"x").digest()


def test_a_claim_ferryman_cannot_check_is_refused_before_any_byte() -> None:
    with pytest.raises(HttpError) as info:
        BodyChecks.from_request(request("PUT", "/f", {"Repr-Digest": "unixsum=:AAAA:"}, b"x"))
    assert (info.value.status, info.value.error) == (400, "bad_digest")
    assert "Repr-Digest unixsum" in info.value.detail
