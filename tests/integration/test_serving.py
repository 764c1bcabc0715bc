"""Serving files over every transfer path, every byte checked against the pattern."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.rawhttp import RawResponse, request_bytes
from tests.serverproc import ServerProcess, Servers, pattern

SIZES = (0, 1, 15, 16, 17, 1000, 16384, 16385, 65536, 1_000_000, 5 * 1024 * 1024 + 7)


@pytest.mark.parametrize("size", SIZES)
def test_whole_file_is_byte_exact(server: ServerProcess, size: int) -> None:
    with server.connect() as conn:
        r = conn.get(f"/p{size}.bin")
    assert r.status == 200
    assert r.header("content-length") == str(size)
    assert r.body == pattern(size)
    assert r.header("accept-ranges") == "bytes"
    assert r.header("content-type") == "application/octet-stream"


RANGE_CASES = [
    # (file size, Range header, expected (start, end) inclusive)
    (1000, "bytes=0-0", (0, 0)),
    (1000, "bytes=0-499", (0, 499)),
    (1000, "bytes=500-", (500, 999)),
    (1000, "bytes=-10", (990, 999)),
    (1000, "bytes=-5000", (0, 999)),  # suffix longer than the file: clamped
    (1000, "bytes=990-5000", (990, 999)),  # last position clamped
    (1000, "bytes=999-999", (999, 999)),
    (1_000_000, "bytes=123457-654321", (123457, 654321)),
    (5 * 1024 * 1024 + 7, "bytes=4000000-", (4000000, 5 * 1024 * 1024 + 6)),
    (5 * 1024 * 1024 + 7, "bytes=-1", (5 * 1024 * 1024 + 6, 5 * 1024 * 1024 + 6)),
    (1000, "bytes=5000-6000,10-19", (10, 19)),  # unsatisfiable member dropped
]


@pytest.mark.parametrize(("size", "header", "span"), RANGE_CASES)
def test_single_range_is_exact(
    server: ServerProcess, size: int, header: str, span: tuple[int, int]
) -> None:
    start, end = span
    with server.connect() as conn:
        r = conn.get(f"/p{size}.bin", {"Range": header})
    assert r.status == 206
    assert r.header("content-range") == f"bytes {start}-{end}/{size}"
    assert r.header("content-length") == str(end - start + 1)
    assert r.body == pattern(end - start + 1, start)


def parse_multipart(body: bytes, content_type: str) -> list[tuple[str, str, bytes]]:
    found = re.search(r"boundary=\"?([^\";]+)", content_type)
    assert found, content_type
    boundary = found.group(1)
    parts = []
    for chunk in body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, payload = chunk.partition(b"\r\n\r\n")
        fields = dict(
            line.split(": ", 1) for line in head.decode().strip("\r\n").split("\r\n") if line
        )
        parts.append((fields["Content-Type"], fields["Content-Range"], payload[:-2]))
    return parts


@pytest.mark.parametrize(
    "header",
    ["bytes=0-15,32-47", "bytes=-16,0-0,500-515", "bytes=100-199, 300-399 ,900-"],
)
def test_multiple_ranges_are_multipart_byteranges(server: ServerProcess, header: str) -> None:
    with server.connect() as conn:
        r = conn.get("/p1000.bin", {"Range": header})
    assert r.status == 206
    content_type = r.header("content-type") or ""
    assert content_type.startswith("multipart/byteranges; boundary=")
    assert len(r.body) == int(r.header("content-length") or -1)
    parts = parse_multipart(r.body, content_type)
    assert len(parts) == header.count(",") + 1
    for kind, content_range, payload in parts:
        assert kind == "application/octet-stream"
        span = re.match(r"bytes (\d+)-(\d+)/1000", content_range)
        assert span, content_range
        start, end = map(int, span.groups())
        assert payload == pattern(end - start + 1, start)


def test_multipart_boundary_is_random(server: ServerProcess) -> None:
    with server.connect() as conn:
        a = conn.get("/p1000.bin", {"Range": "bytes=0-1,5-6"})
        b = conn.get("/p1000.bin", {"Range": "bytes=0-1,5-6"})
    assert a.header("content-type") != b.header("content-type")


@pytest.mark.parametrize(
    "header", ["bytes=1000-", "bytes=-0", "bytes=5000-6000,2000-", "bytes=x-y", "bytes=5-1"]
)
def test_unsatisfiable_or_invalid_range_is_416(server: ServerProcess, header: str) -> None:
    with server.connect() as conn:
        r = conn.get("/p1000.bin", {"Range": header})
    assert r.status == 416
    assert r.header("content-range") == "bytes */1000"


@pytest.mark.parametrize(
    "header",
    ["items=0-5", "bytes=0-,1-,2-", ",".join(["bytes=0-0"] + ["1-1"] * 100)],
    ids=["unknown-unit", "amplification", "too-many-ranges"],
)
def test_ranges_that_are_ignored_give_the_full_file(server: ServerProcess, header: str) -> None:
    with server.connect() as conn:
        r = conn.get("/p1000.bin", {"Range": header})
    assert r.status == 200
    assert r.body == pattern(1000)


def test_range_on_empty_file_is_200_empty(server: ServerProcess) -> None:
    with server.connect() as conn:
        r = conn.get("/p0.bin", {"Range": "bytes=0-10"})
    assert (r.status, r.body, r.header("content-length")) == (200, b"", "0")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Range": "bytes=10-19"}, {"Range": "bytes=0-1,5-6"}, {"Range": "bytes=-0"}],
    ids=["full", "range", "multi", "unsatisfiable"],
)
def test_head_sends_exactly_the_headers_get_would(
    server: ServerProcess, headers: dict[str, str]
) -> None:
    def comparable(r: RawResponse) -> list[tuple[str, str]]:
        # Each answer has its own Date and request id (and a multipart boundary).
        drop = {"date", "x-request-id"}
        if "," in headers.get("Range", ""):
            drop.add("content-type")
        return [(k, v) for k, v in r.headers if k.lower() not in drop]

    with server.connect() as conn:
        got = conn.get("/p1000.bin", headers)
        head = conn.request("HEAD", "/p1000.bin", headers)
        after = conn.get("/hello.txt")  # the HEAD left no body bytes behind
    assert head.status == got.status
    assert comparable(head) == comparable(got)
    assert head.body == b""
    assert after.body == b"hello, world\n"


def test_validators_and_content_type(server: ServerProcess) -> None:
    with server.connect() as conn:
        r = conn.get("/hello.txt")
        page = conn.get("/page.html")
    etag = r.header("etag") or ""
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+-[0-9a-f]+"', etag)
    assert (r.header("last-modified") or "").endswith(" GMT")
    assert (r.header("date") or "").endswith(" GMT")
    assert r.header("content-type") == "text/plain; charset=utf-8"
    assert page.header("content-type") == "text/html; charset=utf-8"


def validators(server: ServerProcess, path: str = "/p1000.bin") -> tuple[str, str]:
    with server.connect() as conn:
        r = conn.get(path)
    return r.header("etag") or "", r.header("last-modified") or ""


@pytest.mark.parametrize(
    ("make_headers", "status"),
    [
        (lambda e, lm: {"If-None-Match": e}, 304),
        (lambda e, lm: {"If-None-Match": "W/" + e}, 304),  # weak comparison
        (lambda e, lm: {"If-None-Match": '"other", ' + e}, 304),
        (lambda e, lm: {"If-None-Match": "*"}, 304),
        (lambda e, lm: {"If-None-Match": '"other"'}, 200),
        (lambda e, lm: {"If-Modified-Since": lm}, 304),
        (lambda e, lm: {"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}, 200),
        (lambda e, lm: {"If-None-Match": '"other"', "If-Modified-Since": lm}, 200),
        (lambda e, lm: {"If-Match": e}, 200),
        (lambda e, lm: {"If-Match": "*"}, 200),
        (lambda e, lm: {"If-Match": "W/" + e}, 412),  # strong comparison
        (lambda e, lm: {"If-Match": '"other"'}, 412),
        (lambda e, lm: {"If-Match": '"other"', "If-None-Match": e}, 412),  # order
        (lambda e, lm: {"If-Unmodified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}, 412),
        (lambda e, lm: {"If-Unmodified-Since": lm}, 200),
        (
            lambda e, lm: {"If-Match": e, "If-Unmodified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"},
            200,
        ),
    ],
)
def test_preconditions(
    server: ServerProcess, make_headers: Callable[[str, str], dict[str, str]], status: int
) -> None:
    etag, last_modified = validators(server)
    with server.connect() as conn:
        r = conn.get("/p1000.bin", make_headers(etag, last_modified))
    assert r.status == status
    if status == 304:
        assert r.body == b""
        assert r.header("etag") == etag
        assert r.header("content-length") is None
    if status == 200:
        assert r.body == pattern(1000)


@pytest.mark.parametrize(
    ("make_if_range", "ranged"),
    [
        (lambda e, lm: e, True),
        (lambda e, lm: lm, True),
        (lambda e, lm: "W/" + e, False),  # a weak tag never matches If-Range
        (lambda e, lm: '"stale-version"', False),
        (lambda e, lm: "Sat, 01 Jan 2000 00:00:00 GMT", False),
        (lambda e, lm: "not a date", False),
    ],
)
def test_if_range(
    server: ServerProcess, make_if_range: Callable[[str, str], str], ranged: bool
) -> None:
    etag, last_modified = validators(server)
    with server.connect() as conn:
        r = conn.get(
            "/p1000.bin", {"Range": "bytes=100-199", "If-Range": make_if_range(etag, last_modified)}
        )
    if ranged:
        assert (r.status, r.body) == (206, pattern(100, 100))
    else:
        assert (r.status, r.body) == (200, pattern(1000))


def test_keep_alive_serves_many_requests_on_one_connection(server: ServerProcess) -> None:
    with server.connect() as conn:
        for size in (16, 65536, 1000, 0, 16385):
            r = conn.get(f"/p{size}.bin")
            assert r.body == pattern(size)
            assert r.header("connection") is None


def test_pipelined_requests_are_answered_in_order(server: ServerProcess) -> None:
    paths = ["/p1000.bin", "/hello.txt", "/missing", "/p65536.bin", "/plain/", "/p16.bin"]
    raw = b"".join(request_bytes("GET", p) for p in paths)
    with server.connect() as conn:
        responses = conn.exchange(raw, count=len(paths))
    assert [r.status for r in responses] == [200, 200, 404, 200, 200, 200]
    assert responses[0].body == pattern(1000)
    assert responses[1].body == b"hello, world\n"
    assert responses[3].body == pattern(65536)
    assert responses[5].body == pattern(16)


def test_connection_close_is_honoured(server: ServerProcess) -> None:
    with server.connect() as conn:
        r = conn.get("/p16.bin", {"Connection": "close"})
        assert r.header("connection") == "close"
        assert r.body == pattern(16)
        assert conn.closed_by_peer(5)


def test_http10_closes_unless_keep_alive_asked(server: ServerProcess) -> None:
    with server.connect() as conn:
        [r] = conn.exchange(request_bytes("GET", "/p17.bin", host=None, version="HTTP/1.0"))
        assert r.version == "HTTP/1.1" and r.body == pattern(17)
        assert r.header("connection") == "close"
        assert conn.closed_by_peer(5)
    with server.connect() as conn:
        keep = {"Connection": "keep-alive"}
        keep_alive = request_bytes("GET", "/p17.bin", keep, host=None, version="HTTP/1.0")
        first, second = conn.exchange(keep_alive * 2, count=2)
        assert first.header("connection") == "keep-alive"
        assert first.body == second.body == pattern(17)


def test_expect_100_continue_without_body_is_answered(server: ServerProcess) -> None:
    with server.connect() as conn:
        r = conn.get("/hello.txt", {"Expect": "100-continue"})
    assert r.status == 200 and r.body == b"hello, world\n"


def test_unknown_expectation_is_417(server: ServerProcess) -> None:
    with server.connect() as conn:
        r = conn.get("/hello.txt", {"Expect": "something-else"})
    assert r.status == 417


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "PROPFIND"])
def test_other_methods_get_405_with_allow(server: ServerProcess, method: str) -> None:
    with server.connect() as conn:
        r = conn.request(method, "/hello.txt")
    assert r.status == 405
    assert r.header("allow") == "GET, HEAD, OPTIONS"
    assert json.loads(r.body)["error"] == "method_not_allowed"


def test_unknown_method_is_501(server: ServerProcess) -> None:
    with server.connect() as conn:
        r = conn.request("BREW", "/hello.txt")
    assert r.status == 501


def test_missing_file_is_404_json_or_a_page(server: ServerProcess) -> None:
    with server.connect() as conn:
        api = conn.get("/nope.txt", {"Accept": "*/*"})
        browser = conn.get("/nope.txt", {"Accept": "text/html,application/xhtml+xml"})
    assert api.status == browser.status == 404
    assert json.loads(api.body) == {"error": "not_found", "detail": "no such file"}
    assert browser.header("content-type") == "text/html; charset=utf-8"
    assert b"<h1>404 Not Found</h1>" in browser.body and b'<a href="/">' in browser.body


MISSES = [
    "/nope.txt",  # nothing of that name
    "/no-dir/nope.txt",  # a directory on the way missing
    "/hello.txt/",  # a file named as a directory
    "/hello.txt/x",  # a file on the way
    "/.git/config",  # a dot-name (refused before any open)
    "/escape-link",  # a symlink out of the root
    "/hidden-link",  # a symlink into a dot-name
    "/fifo",  # neither a file nor a directory
    "/plain/nope.tar/m",  # through an archive that is not there
]


@pytest.mark.parametrize("accept", ["*/*", "text/html", "text/plain"])
def test_every_miss_is_the_same_404_byte_for_byte_and_keeps_the_connection(
    server: ServerProcess, accept: str
) -> None:
    """However a path comes to name nothing, the 404 is the same answer: same headers,
    same body for each kind of client, HEAD the same head; the connection carries on."""
    with server.connect() as conn:
        seen = set()
        for target in MISSES:
            r = conn.get(target, {"Accept": accept})
            head = conn.request("HEAD", target, {"Accept": accept})
            assert r.status == head.status == 404, target
            framing = [(k, v) for k, v in r.headers if k not in ("Date", "X-Request-Id")]
            assert framing == [(k, v) for k, v in head.headers if k not in ("Date", "X-Request-Id")]
            assert r.header("content-length") == str(len(r.body)) and r.whole
            seen.add((tuple(framing), r.body))
        after = conn.get("/hello.txt")
    assert after.status == 200 and after.body == b"hello, world\n"
    assert len(seen) == 1, seen
    ((kept, body),) = seen
    if accept == "*/*":
        assert body == b'{"error": "not_found", "detail": "no such file"}\n'
        kind = "application/json"
    elif accept == "text/plain":
        assert body == b"404 Not Found\nno such file\n"
        kind = "text/plain; charset=utf-8"
    else:
        assert body.startswith(b"<!DOCTYPE html>") and b"<h1>404 Not Found</h1>" in body
        kind = "text/html; charset=utf-8"
    named = dict(kept)
    assert (
        named.pop("Content-Security-Policy", None) is not None or kind != "text/html; charset=utf-8"
    )
    assert named == {"Content-Type": kind, "Cache-Control": "no-store",
                     "Content-Length": str(len(body))}  # fmt: skip


def test_directory_without_slash_redirects(server: ServerProcess) -> None:
    with server.connect() as conn:
        r = conn.get("/with%20index?x=1")
        evil = conn.get("//evil.example/plain")
    assert r.status == 301
    assert r.header("location") == "/with%20index/?x=1"
    assert evil.status == 404 or evil.header("location") == "/evil.example/plain/"


def test_directory_with_index_serves_it(server: ServerProcess) -> None:
    with server.connect() as conn:
        r = conn.get("/with%20index/")
    assert r.status == 200
    assert r.body == b"<h1>index</h1>"
    assert r.header("content-type") == "text/html; charset=utf-8"


def test_html_listing_is_sorted_escaped_and_hides_dotfiles(server: ServerProcess) -> None:
    with server.connect() as conn:
        r = conn.get("/plain/", {"Accept": "text/html"})
    assert r.status == 200
    page = r.body.decode()
    names = re.findall(r'<div class="row">.*?<a href="[^"]*">([^<]*)</a>', page)
    assert names == ["../", "sub/", "&lt;script&gt;&amp;&#x27;&quot;.txt", "A.txt", "b.txt"]
    assert page.count("<script>") == 1  # the page's own, never a name's
    assert ".secret" not in page


def test_json_listing(server: ServerProcess) -> None:
    with server.connect() as conn:
        r = conn.get("/", {"Accept": "application/json"})
    doc = json.loads(r.body)
    names = [e["name"] for e in doc["entries"]]
    assert doc["path"] == "/"
    assert "hello.txt" in names and "plain" in names
    assert not [n for n in names if n.startswith(".")]
    assert {e["type"] for e in doc["entries"] if e["name"] == "plain"} == {"directory"}
    entry = next(e for e in doc["entries"] if e["name"] == "p1000.bin")
    assert entry["size"] == 1000


def test_symlink_inside_root_is_served(server: ServerProcess) -> None:
    with server.connect() as conn:
        r = conn.get("/inside-link")
    assert (r.status, r.body) == (200, b"hello, world\n")


def test_cache_control_is_configurable(ferryman: Servers) -> None:
    srv = ferryman("--cache-control", "public, max-age=60")
    with srv.connect() as conn:
        r = conn.get("/hello.txt")
        listing = conn.get("/plain/")
    assert r.header("cache-control") == "public, max-age=60"
    assert listing.header("cache-control") == "public, max-age=60"
    plain = ferryman()
    with plain.connect() as conn:
        assert conn.get("/hello.txt").header("cache-control") is None


def test_416_carries_one_cache_control(ferryman: Servers) -> None:
    srv = ferryman("--cache-control", "max-age=60")
    with srv.connect() as conn:
        r = conn.get("/p1000.bin", {"Range": "bytes=5000-"})
    assert r.status == 416 and r.count("cache-control") == 1


def test_listing_shows_only_what_would_be_served(server: ServerProcess) -> None:
    with server.connect() as conn:
        names = [
            e["name"]
            for e in json.loads(conn.get("/", {"Accept": "application/json"}).body)["entries"]
        ]
    assert "inside-link" in names
    assert not {"escape-link", "escape-dir", "hidden-link"} & set(names)


def test_follow_symlinks_still_hides_dotfiles_and_state(ferryman: Servers) -> None:
    srv = ferryman("--follow-symlinks")
    with srv.connect() as conn:
        assert conn.get("/escape-link").body == b"CANARY-OUTSIDE-ROOT"
        assert conn.get("/hidden-link").status == 404
        names = [
            e["name"]
            for e in json.loads(conn.get("/", {"Accept": "application/json"}).body)["entries"]
        ]
    assert "escape-link" in names and "hidden-link" not in names


def test_state_dir_inside_root_is_neither_listed_nor_served(
    ferryman: Servers, docroot: Path
) -> None:
    srv = ferryman("--state-dir", str(docroot / "plain" / "sub"))
    with srv.connect() as conn:
        listing = json.loads(conn.get("/plain/", {"Accept": "application/json"}).body)
        assert "sub" not in [e["name"] for e in listing["entries"]]
        assert conn.get("/plain/sub/").status == 404


@pytest.mark.parametrize("small_body", ["16384", "0"])
def test_multipart_of_small_ranges_is_exact_whether_inlined_or_not(
    ferryman: Servers, small_body: str
) -> None:
    srv = ferryman("--small-body", small_body)
    header = "bytes=0-16383,2000000-2016383,5000000-5016383"
    with srv.connect() as conn:
        r = conn.get(f"/p{5 * 1024 * 1024 + 7}.bin", {"Range": header})
    parts = parse_multipart(r.body, r.header("content-type") or "")
    assert [p[1] for p in parts] == [
        f"bytes {s}-{s + 16383}/{5 * 1024 * 1024 + 7}" for s in (0, 2000000, 5000000)
    ]
    for (_, _, payload), start in zip(parts, (0, 2000000, 5000000), strict=True):
        assert payload == pattern(16384, start)


def test_listings_are_utf8_and_every_href_fetches_its_file(
    ferryman: Servers, tmp_path: Path
) -> None:
    """Names that are not UTF-8 on disk (or in an archive) are shown with U+FFFD and
    linked by their raw bytes: the JSON and HTML decode strictly, each link fetches."""
    import io
    import tarfile
    from html import unescape
    from urllib.parse import urljoin

    root = tmp_path / "root"
    files = {  # raw name -> content
        b"caf\xe9.txt": b"latin-1 name",
        "é €.txt".encode(): b"utf-8 name",
        b"line\nbreak.txt": b"control character",
        b"100% #1?.txt": b"reserved characters",
        b"d\xff/inner\xfe.txt": b"inside a latin-1 directory",
    }
    os.makedirs(os.path.join(os.fsencode(root), b"d\xff"))
    for raw, content in files.items():
        with open(os.path.join(os.fsencode(root), raw), "wb") as handle:
            handle.write(content)
    members = {b"m\xe9.txt": b"member, latin-1", "ü.txt".encode(): b"member, utf-8"}
    with tarfile.open(root / "a.tar", "w", format=tarfile.GNU_FORMAT) as tar:
        for raw, content in members.items():
            info = tarfile.TarInfo(os.fsdecode(raw))  # written back as the same bytes
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    srv = ferryman(root=root)

    def fetched(listing: str, expected: dict[bytes, bytes]) -> None:
        """Every entry of `listing`, JSON and HTML, fetches what `expected` says."""
        with srv.connect() as conn:
            as_json = conn.get(listing, {"Accept": "application/json"})
            as_html = conn.get(listing, {"Accept": "text/html"})
            doc = json.loads(as_json.body.decode("utf-8"))  # strict: any bad byte fails
            page = as_html.body.decode("utf-8")
            links = [
                unescape(h) for h in re.findall(r'<tr data-name=.*?<a href="([^"]*)">', page, re.S)
            ]
            assert [e["href"] for e in doc["entries"]] == links
            for e in doc["entries"]:
                assert "\udcff" not in e["name"]
                url = urljoin(listing, e["href"])
                got = conn.get(url)
                assert got.status == 200, (url, got.status)
                if e["type"] == "file":
                    raw = [k for k in expected if k.decode("utf-8", "replace") == e["name"]]
                    assert raw and got.body == expected[raw[0]], e

    top = {k: v for k, v in files.items() if b"/" not in k}
    top[b"a.tar"] = (root / "a.tar").read_bytes()
    fetched("/", top)
    fetched("/d%FF/", {b"inner\xfe.txt": files[b"d\xff/inner\xfe.txt"]})
    fetched("/a.tar/", members)
    with srv.connect() as conn:
        doc = json.loads(conn.get("/", {"Accept": "application/json"}).body)
    shown = {e["name"]: e["href"] for e in doc["entries"]}
    assert shown["caf\ufffd.txt"] == "caf%E9.txt" and shown["d\ufffd"] == "d%FF/"
    assert shown["line\nbreak.txt"] == "line%0Abreak.txt"
    assert "Traceback" not in srv.log_text()
