"""Access control: token files, signed URLs, and the 401/403 table of the Authorizer."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ferryman.app.auth import (
    SIGNABLE_METHODS,
    Access,
    Authorizer,
    Grant,
    SigningKey,
    TokenTable,
    expires_in,
)
from ferryman.errors import ConfigError, HttpError
from ferryman.http.parser import Request
from tests.builders import request

NOW = 1_700_000_000
KEY = SigningKey(b"0123456789abcdef0123456789abcdef")
READER = "r3ader-T0ken"
WRITER = "wr1ter.Token_~+/="
PHOTOS = "ph0tos-writer"
TOKENS = TokenTable.parse(
    f"""
# comment, then a blank line

{READER} read
{WRITER}   write   /
{PHOTOS} write /photos
{PHOTOS} read /
"""
)


def sent(authorization: str | None) -> dict[str, str]:
    """The Authorization field a request carries, if any."""
    return {} if authorization is None else {"Authorization": authorization}


def authorizer(*, private: bool = False, allow_write: bool = True) -> Authorizer:
    return Authorizer(tokens=TOKENS, signing_key=KEY, private=private, allow_write=allow_write)


def signed(method: str, path: str, expires_at: int = NOW + 60, query: str = "") -> str:
    return KEY.sign_url(path + (f"?{query}" if query else ""), method, expires_at)


def status_of(auth: Authorizer, req: Request, access: Access, path: str, now: int = NOW) -> int:
    try:
        auth.check(req, access, path, now)
    except HttpError as exc:
        return exc.status
    return 200


# -- the Authorizer table -------------------------------------------------------------

R, W = Access.READ, Access.WRITE
CASES = [
    # (private, allow_write, method, target, authorization, access, path, status)
    (False, True, "GET", "/a.txt", None, R, "/a.txt", 200),  # public read
    (True, True, "GET", "/a.txt", None, R, "/a.txt", 401),  # private read, nothing sent
    (True, True, "GET", "/a.txt", f"Bearer {READER}", R, "/a.txt", 200),
    (True, True, "GET", "/a.txt", f"bEaReR {READER}", R, "/a.txt", 200),  # scheme any case
    (False, True, "GET", "/a.txt", "Bearer unknown", R, "/a.txt", 403),  # bad token, public
    (True, True, "GET", "/a.txt", "Bearer unknown", R, "/a.txt", 403),
    (False, True, "PUT", "/a.txt", None, W, "/a.txt", 401),  # write, nothing sent
    (False, True, "PUT", "/a.txt", f"Bearer {READER}", W, "/a.txt", 403),  # read scope
    (False, True, "PUT", "/a.txt", f"Bearer {WRITER}", W, "/a.txt", 200),
    (False, True, "DELETE", "/x/y", f"Bearer {WRITER}", W, "/x/y", 200),
    (False, False, "PUT", "/a.txt", f"Bearer {WRITER}", W, "/a.txt", 403),  # writes disabled
    (False, False, "PUT", "/a.txt", None, W, "/a.txt", 403),  # disabled beats 401
    # prefix "/photos" (as "/photos/"): whole segments only
    (False, True, "PUT", "/photos/a.jpg", f"Bearer {PHOTOS}", W, "/photos/a.jpg", 200),
    (False, True, "PUT", "/photos/d/e.jpg", f"Bearer {PHOTOS}", W, "/photos/d/e.jpg", 200),
    (False, True, "PUT", "/photos/", f"Bearer {PHOTOS}", W, "/photos/", 200),
    (False, True, "PUT", "/photos", f"Bearer {PHOTOS}", W, "/photos", 200),
    (False, True, "PUT", "/photos-private/x", f"Bearer {PHOTOS}", W, "/photos-private/x", 403),
    (False, True, "PUT", "/photosx", f"Bearer {PHOTOS}", W, "/photosx", 403),
    (False, True, "PUT", "/a.txt", f"Bearer {PHOTOS}", W, "/a.txt", 403),
    (True, True, "GET", "/a.txt", f"Bearer {PHOTOS}", R, "/a.txt", 200),  # its read grant
    # malformed Authorization: 401 invalid_request, even for a public read
    (False, True, "GET", "/a.txt", "Bearer", R, "/a.txt", 401),
    (False, True, "GET", "/a.txt", "Bearer a b", R, "/a.txt", 401),
    (False, True, "GET", "/a.txt", "Bearer t,k", R, "/a.txt", 401),
    # another scheme is not ours: absent credentials
    (False, True, "GET", "/a.txt", "Basic dXNlcjpwYXNz", R, "/a.txt", 200),
    (True, True, "GET", "/a.txt", "Basic dXNlcjpwYXNz", R, "/a.txt", 401),
    (False, True, "PUT", "/a.txt", "Basic dXNlcjpwYXNz", W, "/a.txt", 401),
    # signed URLs
    (True, True, "GET", signed("GET", "/a.txt"), None, R, "/a.txt", 200),
    (True, True, "HEAD", signed("GET", "/a.txt"), None, R, "/a.txt", 200),  # GET URL, HEAD
    (True, True, "GET", signed("HEAD", "/a.txt"), None, R, "/a.txt", 403),  # not the reverse
    (False, True, "PUT", signed("PUT", "/a.txt"), None, W, "/a.txt", 200),
    (False, True, "DELETE", signed("DELETE", "/a.txt"), None, W, "/a.txt", 200),
    (False, True, "DELETE", signed("PUT", "/a.txt"), None, W, "/a.txt", 403),  # wrong method
    (False, True, "PUT", signed("GET", "/a.txt"), None, W, "/a.txt", 403),
    (False, True, "PUT", signed("PUT", "/b.txt").replace("/b", "/a"), None, W, "/a.txt", 403),
    (False, True, "GET", signed("GET", "/a.txt", NOW - 1), None, R, "/a.txt", 403),  # expired
    (False, True, "PUT", signed("PUT", "/a.txt", NOW), None, W, "/a.txt", 200),  # last second
    (False, False, "PUT", signed("PUT", "/a.txt"), None, W, "/a.txt", 403),  # disabled
    (False, True, "PUT", signed("PUT", "/a.txt", query="x=1"), None, W, "/a.txt", 200),
    # both: every credential sent is checked, either may allow
    (False, True, "PUT", signed("PUT", "/a.txt"), f"Bearer {READER}", W, "/a.txt", 200),
    (False, True, "PUT", signed("PUT", "/a.txt"), "Bearer unknown", W, "/a.txt", 403),
    (False, True, "PUT", signed("GET", "/a.txt"), f"Bearer {WRITER}", W, "/a.txt", 403),
]


@pytest.mark.parametrize(
    ("private", "allow_write", "method", "target", "authorization", "access", "path", "status"),
    CASES,
)
def test_authorizer_table(
    private: bool,
    allow_write: bool,
    method: str,
    target: str,
    authorization: str | None,
    access: Access,
    path: str,
    status: int,
) -> None:
    auth = authorizer(private=private, allow_write=allow_write)
    assert status_of(auth, request(method, target, sent(authorization)), access, path) == status


def test_401_carries_a_bearer_challenge() -> None:
    with pytest.raises(HttpError) as info:
        authorizer(private=True).check(request("GET", "/a"), R, "/a", NOW)
    assert (info.value.status, info.value.error) == (401, "unauthorized")
    assert info.value.headers == (("WWW-Authenticate", 'Bearer realm="ferryman"'),)


def test_malformed_authorization_is_invalid_request() -> None:
    with pytest.raises(HttpError) as info:
        authorizer().check(request("GET", "/a", {"Authorization": "Bearer"}), R, "/a", NOW)
    assert info.value.status == 401
    assert info.value.headers == (
        ("WWW-Authenticate", 'Bearer realm="ferryman", error="invalid_request"'),
    )


def test_403_is_forbidden_without_challenge() -> None:
    with pytest.raises(HttpError) as info:
        authorizer().check(
            request("PUT", "/a", {"Authorization": f"Bearer {READER}"}), W, "/a", NOW
        )
    assert (info.value.status, info.value.error, info.value.headers) == (403, "forbidden", ())


def test_writes_disabled_message() -> None:
    with pytest.raises(HttpError) as info:
        authorizer(allow_write=False).check(request("PUT", "/a"), W, "/a", NOW)
    assert info.value.detail == "writes are disabled (--allow-write)"


def test_signature_without_a_signing_key_is_403() -> None:
    auth = Authorizer(tokens=TOKENS, signing_key=None, private=False, allow_write=False)
    assert status_of(auth, request("GET", signed("GET", "/a")), R, "/a") == 403


def test_bearer_token_without_a_token_table_is_403() -> None:
    auth = Authorizer(tokens=None, signing_key=KEY, private=False, allow_write=False)
    assert (
        status_of(auth, request("GET", "/a", {"Authorization": f"Bearer {READER}"}), R, "/a") == 403
    )


@pytest.mark.parametrize(
    "authorization", [None, "Bearer anything", "Bearer", "Bearer a b", "Basic dXNlcjpwYXNz"]
)
def test_a_server_without_credentials_configured_checks_none(authorization: str | None) -> None:
    auth = Authorizer(tokens=None, signing_key=None, private=False, allow_write=False)
    for target in ("/a", signed("GET", "/a"), signed("GET", "/a", NOW - 1)):
        assert status_of(auth, request("GET", target, sent(authorization)), R, "/a") == 200
    assert status_of(auth, request("PUT", "/a", sent(authorization)), W, "/a") == 403


@pytest.mark.parametrize(("private", "allow_write"), [(True, False), (False, True)])
def test_private_or_writes_need_some_credential_source(private: bool, allow_write: bool) -> None:
    with pytest.raises(ConfigError, match="needs --tokens or --signing-key"):
        Authorizer(tokens=None, signing_key=None, private=private, allow_write=allow_write)


# -- grants and prefixes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "path", "covered"),
    [
        ("/", "/", True),
        ("/", "/anything/at/all", True),
        ("/photos/", "/photos/a.jpg", True),
        ("/photos/", "/photos/", True),
        ("/photos/", "/photos", True),
        ("/photos/", "/photos-private/x", False),
        ("/photos/", "/photo", False),
        ("/photos/", "/", False),
        ("/a/b/", "/a/b/c", True),
        ("/a/b/", "/a/bc", False),
        ("/a/b/", "/a", False),
    ],
)
def test_prefix_covers_whole_segments(prefix: str, path: str, covered: bool) -> None:
    assert Grant(Access.READ, prefix).covers(Access.READ, path) is covered


def test_write_implies_read_but_not_the_reverse() -> None:
    assert Grant(Access.WRITE, "/").covers(Access.READ, "/x")
    assert Grant(Access.WRITE, "/").covers(Access.WRITE, "/x")
    assert not Grant(Access.READ, "/").covers(Access.WRITE, "/x")


# -- the token file ----------------------------------------------------------------------


def test_token_file_grants() -> None:
    assert TOKENS.lookup(READER) == [Grant(Access.READ, "/")]
    assert TOKENS.lookup(WRITER) == [Grant(Access.WRITE, "/")]
    assert TOKENS.lookup(PHOTOS) == [Grant(Access.WRITE, "/photos/"), Grant(Access.READ, "/")]
    assert TOKENS.lookup("unknown") == []
    assert TOKENS.lookup("") == []
    assert TOKENS.lookup(READER + "x") == []


@pytest.mark.parametrize(
    ("written", "normalised"),
    [
        ("/", "/"),
        ("/photos", "/photos/"),
        ("/photos/", "/photos/"),
        ("//photos//2024/./", "/photos/2024/"),
        ("/a/../b", "/b/"),
        ("/my%20files", "/my%20files/"),
        ("/caf\u00e9", "/caf%C3%A9/"),
    ],
)
def test_token_prefixes_are_normalised(written: str, normalised: str) -> None:
    table = TokenTable.parse(f"tok write {written}")
    assert table.lookup("tok") == [Grant(Access.WRITE, normalised)]


def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# ops\n\n  tok1 read /pub\r\ntok2 write\n")
    table = TokenTable.load(str(path))
    assert table.lookup("tok1") == [Grant(Access.READ, "/pub/")]
    assert table.lookup("tok2") == [Grant(Access.WRITE, "/")]


SECRET = "s3cret-T0ken-value"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (f"{SECRET}", "expected TOKEN SCOPE"),  # missing scope
        (f"{SECRET} read /a /b", "expected TOKEN SCOPE"),  # too many fields
        (f"{SECRET} admin", "scope must be"),
        (f"{SECRET} READ", "scope must be"),
        (f"read {SECRET}", "scope must be"),  # swapped fields: the scope field is the token
        (f"{SECRET} write photos", "must start with '/'"),
        (f"{SECRET} write /../x", "climbs above the root or is hidden"),
        (f"{SECRET} write /.git", "climbs above the root or is hidden"),
        (f"{SECRET}\u00e9 write", "cannot carry"),
        (f"{SECRET} write /{SECRET}/../../x", "climbs above"),
    ],
)
def test_malformed_token_lines(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# first\ngood read\n\n{line}\n")
    with pytest.raises(ConfigError) as info:
        TokenTable.load(str(path))
    message = str(info.value)
    assert "line 4" in message and reason in message
    assert SECRET not in message


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read tokens file"):
        TokenTable.load(str(tmp_path / "missing"))
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe tok read\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        TokenTable.load(str(binary))


def test_tokens_never_appear_in_reprs_or_errors() -> None:
    table = TokenTable.parse(f"{SECRET} write /")
    assert SECRET not in repr(table) and SECRET not in str(table)
    assert SECRET not in repr(table.lookup(SECRET))
    auth = Authorizer(tokens=table, signing_key=None, private=True, allow_write=True)
    assert SECRET not in repr(auth.__dict__)
    for method, access, header in [
        ("GET", R, f"Bearer {SECRET}x"),
        ("PUT", W, f"Bearer {SECRET}x"),
        ("GET", R, f"Bearer {SECRET} {SECRET}"),
    ]:
        with pytest.raises(HttpError) as info:
            auth.check(request(method, "/a", {"Authorization": header}), access, "/a", NOW)
        error = info.value
        text = f"{error} {error!r} {error.detail} {error.headers!r}"
        assert SECRET not in text
    reader = TokenTable.parse(f"{SECRET} read /")
    auth = Authorizer(tokens=reader, signing_key=None, private=True, allow_write=True)
    with pytest.raises(HttpError) as info:
        auth.check(request("PUT", "/a", {"Authorization": f"Bearer {SECRET}"}), W, "/a", NOW)
    assert info.value.status == 403 and SECRET not in str(info.value)


# -- the signing key ---------------------------------------------------------------------


def test_signing_key_file(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"k" * 32 + b"\n")
    assert SigningKey.load(str(path)).sign("GET", "/a", 1) == SigningKey(b"k" * 32).sign(
        "GET", "/a", 1
    )
    path.write_bytes(b"k" * 31 + b"\n")  # the newline does not count
    with pytest.raises(ConfigError, match="at least 32"):
        SigningKey.load(str(path))
    with pytest.raises(ConfigError, match="cannot read signing key"):
        SigningKey.load(str(tmp_path / "missing"))


def test_signing_key_is_hidden() -> None:
    assert "0123456789abcdef" not in repr(KEY)


def test_sign_is_hmac_sha256_hex_over_method_path_expiry() -> None:
    import hashlib
    import hmac

    expected = hmac.new(
        b"0123456789abcdef0123456789abcdef", b"PUT\n/a%20b\n1234", hashlib.sha256
    ).hexdigest()
    assert KEY.sign("put", "/a%20b", 1234) == expected


@pytest.mark.parametrize(
    ("url", "expected_prefix"),
    [
        ("http://h:8000/a.txt", "http://h:8000/a.txt?ferryman-expires=99&"),
        ("http://h/a.txt?x=1&y", "http://h/a.txt?x=1&y&ferryman-expires=99&"),
        ("http://h", "http://h/?ferryman-expires=99&"),
        ("/rel/path", "/rel/path?ferryman-expires=99&"),
        ("http://h/a b/\u00e9", "http://h/a%20b/%C3%A9?ferryman-expires=99&"),
        ("http://h/a%20b", "http://h/a%20b?ferryman-expires=99&"),  # escapes kept as sent
        ("http://h/a?ferryman-expires=1&ferryman-signature=x&k=v", "http://h/a?k=v&ferryman-"),
    ],
)
def test_sign_url_shapes(url: str, expected_prefix: str) -> None:
    out = KEY.sign_url(url, "GET", 99)
    assert out.startswith(expected_prefix)
    parts = urlsplit(out)
    assert KEY.verify("GET", parts.path.encode(), parts.query.encode(), 99) is True


def query_for(method: str, path: str, expires_at: int) -> bytes:
    signature = KEY.sign(method, path, expires_at)
    return f"ferryman-expires={expires_at}&ferryman-signature={signature}".encode()


GOOD = query_for("GET", "/a", NOW)
SIG = KEY.sign("GET", "/a", NOW)


@pytest.mark.parametrize(
    ("method", "path", "query", "result"),
    [
        ("GET", b"/a", b"", None),
        ("GET", b"/a", b"x=1&y=2", None),
        ("GET", b"/a", GOOD, True),
        ("get", b"/a", GOOD, True),  # method upper-cased
        ("GET", b"/a", b"x=1&" + GOOD + b"&z", True),  # other params are not signed
        ("HEAD", b"/a", GOOD, False),
        ("GET", b"/b", GOOD, False),
        ("GET", b"/a/", GOOD, False),
        ("GET", b"/%61", GOOD, False),  # same file, other URL: another signature
        ("GET", b"/a", GOOD.replace(b"=1700000000", b"=1700000001"), False),
        ("GET", b"/a", GOOD.replace(SIG.encode(), SIG.upper().encode()), False),
        ("GET", b"/a", f"ferryman-expires={NOW}".encode(), False),  # signature missing
        ("GET", b"/a", f"ferryman-signature={SIG}".encode(), False),  # expiry missing
        ("GET", b"/a", GOOD + b"&ferryman-expires=1700000000", False),  # duplicated
        ("GET", b"/a", GOOD + b"&ferryman-signature=" + SIG.encode(), False),
        ("GET", b"/a", f"ferryman-expires=+{NOW}&ferryman-signature={SIG}".encode(), False),
        ("GET", b"/a", f"ferryman-expires={NOW}.0&ferryman-signature={SIG}".encode(), False),
        ("GET", b"/a", f"ferryman-expires=&ferryman-signature={SIG}".encode(), False),
        ("GET", b"/a", b"ferryman-expires=" + b"9" * 5000 + b"&ferryman-signature=x", False),
    ],
)
def test_verify_table(method: str, path: bytes, query: bytes, result: bool | None) -> None:
    assert KEY.verify(method, path, query, NOW) is result


@pytest.mark.parametrize(
    ("signed_for", "used_with", "also", "now", "problem"),
    [
        ("GET", "GET", "", NOW, ""),
        ("GET", "HEAD", "GET", NOW, ""),  # what the Authorizer asks for a HEAD read
        ("GET", "HEAD", "", NOW, "this URL is signed for GET, not HEAD"),
        ("GET", "PUT", "", NOW, "this URL is signed for GET, not PUT"),
        ("PUT", "DELETE", "", NOW, "this URL is signed for PUT, not DELETE"),
        ("DELETE", "get", "", NOW, "this URL is signed for DELETE, not GET"),
        ("HEAD", "GET", "", NOW, "this URL is signed for HEAD, not GET"),
        ("GET", "POST", "", NOW, "this URL is signed for GET, not POST"),
        ("GET", "PUT", "", NOW + 1, "this URL is signed for GET, not PUT"),  # the bigger mistake
        ("PUT", "PUT", "", NOW + 1, "this signed URL has expired"),
        ("POST", "PUT", "", NOW, "invalid signature"),  # no method ferryman answers: a forgery
    ],
)
def test_check_says_why_a_signature_does_not_verify(
    signed_for: str, used_with: str, also: str, now: int, problem: str
) -> None:
    query = query_for(signed_for, "/a", NOW)
    verdict = KEY.check(used_with, b"/a", query, now, also=also)
    assert verdict is not None and (verdict.valid, verdict.problem) == (not problem, problem)


MALFORMED = "malformed ferryman-expires, ferryman-signature or ferryman-once"


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        (GOOD.replace(SIG.encode(), b"0" * 64), "invalid signature"),
        (
            GOOD + b"&ferryman-expires=1",
            "malformed ferryman-expires, ferryman-signature or ferryman-once",
        ),
        (
            f"ferryman-signature={SIG}".encode(),
            "malformed ferryman-expires, ferryman-signature or ferryman-once",
        ),
    ],
)
def test_forged_or_malformed_signatures_are_told_apart(query: bytes, problem: str) -> None:
    verdict = KEY.check("GET", b"/a", query, NOW)
    assert verdict is not None and (verdict.valid, verdict.problem) == (False, problem)
    assert KEY.check("GET", b"/a", b"x=1", NOW) is None


def test_urls_signed_before_methods_were_told_apart_still_verify() -> None:
    """The signed text is unchanged (METHOD, path, expiry): a URL made earlier verifies."""
    import hashlib
    import hmac

    old = hmac.new(b"0123456789abcdef0123456789abcdef", b"PUT\n/a\n1700000000", hashlib.sha256)
    query = f"ferryman-expires={NOW}&ferryman-signature={old.hexdigest()}".encode()
    assert KEY.verify("PUT", b"/a", query, NOW) is True


@pytest.mark.parametrize(
    ("method", "target", "access", "detail"),
    [
        ("PUT", signed("GET", "/a.txt"), W, "this URL is signed for GET, not PUT"),
        ("DELETE", signed("PUT", "/a.txt"), W, "this URL is signed for PUT, not DELETE"),
        ("GET", signed("PUT", "/a.txt"), R, "this URL is signed for PUT, not GET"),
        ("GET", signed("GET", "/a.txt", NOW - 1), R, "this signed URL has expired"),
        ("GET", signed("GET", "/b.txt").replace("/b", "/a"), R, "invalid signature"),
    ],
)
def test_the_403_says_what_is_wrong_with_the_url(
    method: str, target: str, access: Access, detail: str
) -> None:
    with pytest.raises(HttpError) as info:
        authorizer().check(request(method, target), access, "/a.txt", NOW)
    assert (info.value.status, info.value.error, info.value.detail) == (403, "forbidden", detail)


@pytest.mark.parametrize("method", ["POST", "PATCH", "OPTIONS", "", "GET "])
def test_sign_url_refuses_methods_ferryman_never_answers(method: str) -> None:
    with pytest.raises(ConfigError, match="GET, HEAD, PUT, DELETE"):
        KEY.sign_url("http://h/a", method, NOW)


def test_verify_expiry_boundary() -> None:
    assert KEY.verify("GET", b"/a", GOOD, NOW) is True
    assert KEY.verify("GET", b"/a", GOOD, NOW + 1) is False


def test_another_key_does_not_verify() -> None:
    other = SigningKey(b"x" * 32)
    assert other.verify("GET", b"/a", GOOD, NOW) is False


# -- properties ---------------------------------------------------------------------------

methods = st.sampled_from(["GET", "HEAD", "PUT", "DELETE", "POST", "PATCH", "MKCOL"])
paths = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="?#"), max_size=40
).map(lambda text: "/" + text)


@given(
    st.sampled_from(SIGNABLE_METHODS),
    paths,
    st.integers(min_value=0, max_value=10**10),
    st.integers(0, 10**9),
)
def test_sign_url_round_trips_through_the_parser(
    method: str, path: str, now: int, lifetime: int
) -> None:
    url = KEY.sign_url("http://h" + path, method, now + lifetime)
    target = url.removeprefix("http://h")
    req = request(method, target)
    assert KEY.verify(req.method, req.path, req.query, now) is True
    assert KEY.verify(req.method, req.path, req.query, now + lifetime + 1) is False


path_chars = st.sampled_from("abcXYZ019/-._~%!$&'()*+,;=:@")


@given(
    methods,
    st.text(path_chars, min_size=1, max_size=30).map(lambda text: "/" + text),
    st.integers(min_value=0, max_value=10**10),
    st.data(),
)
def test_any_single_character_change_fails(
    method: str, path: str, expires_at: int, data: st.DataObject
) -> None:
    signature = KEY.sign(method, path, expires_at)
    query = f"ferryman-expires={expires_at}&ferryman-signature={signature}".encode()
    assert KEY.verify(method, path.encode(), query, expires_at) is True

    i = data.draw(st.integers(0, len(path) - 1))
    char = data.draw(path_chars)
    assume(char != path[i])
    altered = path[:i] + char + path[i + 1 :]
    assert KEY.verify(method, altered.encode(), query, expires_at) is False

    j = data.draw(st.integers(0, len(signature) - 1))
    hex_char = data.draw(st.sampled_from("0123456789abcdefABCDEF"))
    assume(hex_char != signature[j])
    bad = signature[:j] + hex_char + signature[j + 1 :]
    bad_query = f"ferryman-expires={expires_at}&ferryman-signature={bad}".encode()
    assert KEY.verify(method, path.encode(), bad_query, expires_at) is False


# -- expiry parsing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1h", NOW + 3600), ("30m", NOW + 1800), ("7d", NOW + 7 * 86400), ("3600", NOW + 3600),
     ("90s", NOW + 90), ("1.5h", NOW + 5400)],
)  # fmt: skip
def test_expires_in(text: str, expected: int) -> None:
    assert expires_in(text, NOW) == expected


@pytest.mark.parametrize("text", ["0", "0s", "500ms", "-1h", "soon", "1y", ""])
def test_expires_in_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        expires_in(text, NOW)
