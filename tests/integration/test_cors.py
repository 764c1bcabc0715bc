"""OPTIONS and CORS against a real ferryman, asked by real curl (and raw sockets for
`OPTIONS *`, which is what curl sends with --request-target but worth seeing byte for byte).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.serverproc import ServerProcess, need, pattern
from tests.writing import WRITE, Writable, tokens_file

PLAYER = "http://player.example"
OTHER = "https://other.example"
EXPOSED = {"Content-Range", "Accept-Ranges", "Content-Length", "ETag", "Repr-Digest",
           "Content-Digest", "Last-Modified", "X-Request-Id"}  # fmt: skip


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def one(self, name: str) -> str | None:
        values = self.all(name)
        assert len(values) <= 1, f"{name} repeated: {values}"
        return values[0] if values else None

    def vary(self) -> list[str]:
        return [v.strip() for value in self.all("vary") for v in value.split(",")]

    def cors_fields(self) -> set[str]:
        return {k.lower() for k, _ in self.headers if k.lower().startswith("access-control-")}


def curl(url: str, *args: str, origin: str | None = None, tmp: Path) -> Answer:
    """One request by curl; the head and body as curl received them."""
    head, body = tmp / "head", tmp / "body"
    extra = ["-H", f"Origin: {origin}"] if origin else []
    run = subprocess.run(
        [need("curl"), "-sS", "-D", str(head), "-o", str(body), *extra, *args, url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = head.read_bytes().decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = [(k, v.strip()) for k, _, v in (line.partition(":") for line in lines[1:] if line)]
    return Answer(status, headers, body.read_bytes() if body.exists() else b"")


def assert_readable_by(answer: Answer, origin: str, allowed: str | None = None) -> None:
    """What every answer to an allowed origin carries, whatever its status."""
    assert answer.one("access-control-allow-origin") == (allowed or origin)
    assert answer.vary().count("Origin") == 1
    exposed = set((answer.one("access-control-expose-headers") or "").split(", "))
    assert exposed >= EXPOSED
    assert answer.one("access-control-allow-credentials") is None


def assert_no_cors(answer: Answer) -> None:
    assert answer.cors_fields() == set(), answer.headers


# -- OPTIONS --------------------------------------------------------------------------------


def test_options_says_what_a_resource_allows(ferryman: Any, tmp_path: Path) -> None:
    srv = ferryman()
    for path in ("/hello.txt", "/plain/", "/no-such-file"):  # existence is not revealed
        answer = curl(srv.url + path, "-X", "OPTIONS", tmp=tmp_path)
        assert (answer.status, answer.one("allow"), answer.body) == (204, "GET, HEAD, OPTIONS", b"")
        assert_no_cors(answer)
    server_wide = curl(srv.url, "-X", "OPTIONS", "--request-target", "*", tmp=tmp_path)
    assert (server_wide.status, server_wide.one("allow")) == (204, "GET, HEAD, OPTIONS")
    with srv.connect() as conn:  # byte for byte: no body, no length, and the next request works
        raw = conn.exchange(b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\nGET /hello.txt HTTP/1.1\r\n"
                           b"Host: t\r\n\r\n", count=2)  # fmt: skip
    assert raw[0].status == 204 and raw[0].header("content-length") is None
    assert raw[1].status == 200 and raw[1].body == b"hello, world\n"
    refused = curl(srv.url + "/%2e%2e/etc/passwd", "-X", "OPTIONS", "--path-as-is", tmp=tmp_path)
    assert refused.status == 400
    # Other methods' 405 now names OPTIONS too.
    assert curl(srv.url + "/hello.txt", "-X", "PATCH", tmp=tmp_path).one("allow") == (
        "GET, HEAD, OPTIONS"
    )


def test_options_needs_no_credentials_and_names_writes(ferryman: Any, tmp_path: Path) -> None:
    srv = Writable(ferryman, tmp_path)("--private")
    answer = curl(srv.url + "/anything", "-X", "OPTIONS", tmp=tmp_path)
    assert (answer.status, answer.one("allow")) == (204, "GET, HEAD, OPTIONS, PUT, DELETE")
    assert curl(srv.url + "/anything", tmp=tmp_path).status == 401  # reads still need them


# -- preflights -----------------------------------------------------------------------------


def preflight(srv: ServerProcess, origin: str, method: str, asked: str, tmp: Path) -> Answer:
    return curl(
        srv.url + "/p1000.bin", "-X", "OPTIONS", "-H", f"Access-Control-Request-Method: {method}",
        "-H", f"Access-Control-Request-Headers: {asked}", origin=origin, tmp=tmp,
    )  # fmt: skip


def test_a_preflight_from_an_allowed_origin(ferryman: Any, tmp_path: Path) -> None:
    srv = ferryman("--cors-origin", PLAYER, "--cors-max-age", "10m")
    asked = "range,if-match,if-none-match,if-range,x-tracking,authorization,repr-digest"
    answer = preflight(srv, PLAYER, "GET", asked, tmp_path)
    assert answer.status == 204
    assert answer.one("access-control-allow-origin") == PLAYER
    assert answer.one("access-control-allow-methods") == "GET, HEAD, OPTIONS"
    assert answer.one("access-control-allow-headers") == (
        "Range, If-Match, If-None-Match, If-Range, Authorization, Repr-Digest"
    )  # what was asked and is read, never x-tracking
    assert answer.one("access-control-max-age") == "600"
    assert set(answer.vary()) == {
        "Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers",
    }  # fmt: skip
    assert answer.one("access-control-allow-credentials") is None
    assert answer.one("allow") == "GET, HEAD, OPTIONS"


def test_a_preflight_from_another_origin_gets_a_plain_answer(ferryman: Any, tmp_path: Path) -> None:
    srv = ferryman("--cors-origin", PLAYER)
    for origin in (OTHER, "http://player.example:8080", "null", f"{PLAYER}, {OTHER}"):
        answer = preflight(srv, origin, "GET", "range", tmp_path)
        assert (answer.status, answer.one("allow")) == (204, "GET, HEAD, OPTIONS")
        assert_no_cors(answer)
        assert "Origin" in answer.vary()


def test_a_preflight_for_writes(ferryman: Any, tmp_path: Path) -> None:
    srv = Writable(ferryman, tmp_path)("--cors-origin", PLAYER, "--cors-credentials")
    answer = preflight(srv, PLAYER, "PUT", "authorization, content-type, content-digest", tmp_path)
    assert answer.one("access-control-allow-methods") == "GET, HEAD, OPTIONS, PUT, DELETE"
    assert answer.one("access-control-allow-headers") == (
        "Authorization, Content-Type, Content-Digest"
    )
    assert answer.one("access-control-allow-credentials") == "true"
    put = curl(
        srv.url + "/new.bin", "-X", "PUT", "--data-binary", "abc", "-H",
        f"Authorization: Bearer {WRITE}", origin=PLAYER, tmp=tmp_path,
    )  # fmt: skip
    assert put.status == 201 and put.one("location") == "/new.bin"
    assert put.one("access-control-allow-origin") == PLAYER
    assert "Location" in (put.one("access-control-expose-headers") or "")
    assert put.one("access-control-allow-credentials") == "true"


# -- actual answers -------------------------------------------------------------------------


def test_every_status_is_readable_by_an_allowed_origin(ferryman: Any, tmp_path: Path) -> None:
    srv = ferryman("--cors-origin", PLAYER, "--cors-origin", "https://app.example")
    url = srv.url + "/p65536.bin"
    full = curl(url, origin=PLAYER, tmp=tmp_path)
    assert full.status == 200 and full.body == pattern(65536)
    assert_readable_by(full, PLAYER)
    etag = full.one("etag")
    assert etag is not None

    ranged = curl(url, "-r", "100-199", origin=PLAYER, tmp=tmp_path)
    assert (ranged.status, ranged.body) == (206, pattern(100, 100))
    assert ranged.one("content-range") == "bytes 100-199/65536"
    assert_readable_by(ranged, PLAYER)
    assert "Content-Range" in (ranged.one("access-control-expose-headers") or "").split(", ")

    answers = {
        304: curl(url, "-H", f"If-None-Match: {etag}", origin=PLAYER, tmp=tmp_path),
        412: curl(url, "-H", 'If-Match: "other"', origin=PLAYER, tmp=tmp_path),
        416: curl(url, "-r", "70000-", origin=PLAYER, tmp=tmp_path),
        404: curl(srv.url + "/missing.bin", origin=PLAYER, tmp=tmp_path),
        405: curl(url, "-X", "PATCH", origin=PLAYER, tmp=tmp_path),
        301: curl(srv.url + "/plain", origin=PLAYER, tmp=tmp_path),
    }
    for status, answer in answers.items():
        assert answer.status == status
        assert_readable_by(answer, PLAYER)
    assert answers[416].one("content-range") == "bytes */65536"
    head = curl(url, "-I", origin="https://app.example", tmp=tmp_path)
    assert head.status == 200
    assert_readable_by(head, "https://app.example")
    listing = curl(srv.url + "/plain/", "-H", "Accept: application/json", origin=PLAYER,
                   tmp=tmp_path)  # fmt: skip
    assert_readable_by(listing, PLAYER)
    assert set(listing.vary()) == {"Accept", "Origin"}


def test_other_origins_and_no_origin_get_no_cors_headers(ferryman: Any, tmp_path: Path) -> None:
    srv = ferryman("--cors-origin", PLAYER)
    url = srv.url + "/p1000.bin"
    for origin in (OTHER, "HTTP://PLAYER.EXAMPLE", f"{PLAYER}/", "null"):
        for args in ((), ("-r", "0-9"), ("-H", 'If-Match: "x"')):
            answer = curl(url, *args, origin=origin, tmp=tmp_path)
            assert answer.status in (200, 206, 412)
            assert_no_cors(answer)
            assert answer.vary() == ["Origin"]  # a cache must not give it to the player
    plain = curl(url, tmp=tmp_path)
    assert plain.status == 200
    assert_no_cors(plain)
    assert plain.all("vary") == []  # without Origin, nothing is added


def test_answers_from_memory_get_their_own_headers(ferryman: Any, tmp_path: Path) -> None:
    """Small files are answered from memory with headers encoded once; each answer gets
    its own CORS headers, and the kept ones are never changed."""
    srv = ferryman("--cors-origin", PLAYER, "--cors-origin", "https://app.example")
    url = srv.url + "/hello.txt"
    sequence = [None, PLAYER, "https://app.example", None, OTHER, PLAYER, None]
    for origin in sequence * 2:
        answer = curl(url, origin=origin, tmp=tmp_path)
        assert answer.status == 200 and answer.body == b"hello, world\n"
        if origin in (PLAYER, "https://app.example"):
            assert_readable_by(answer, origin)
        else:
            assert_no_cors(answer)
            # hello.txt is text: its answers vary by Accept-Encoding (compression) too
            assert answer.vary() == (
                ["Accept-Encoding"] if origin is None else ["Accept-Encoding", "Origin"]
            )


def test_star_answers_any_origin_and_names_it_when_credentials_come(
    ferryman: Any, tmp_path: Path
) -> None:
    srv = ferryman("--cors-origin", "*", "--tokens", str(tokens_file(tmp_path)))
    url = srv.url + "/p1000.bin"
    public = curl(url, "-r", "0-99", origin=OTHER, tmp=tmp_path)
    assert public.status == 206
    assert_readable_by(public, OTHER, allowed="*")
    with_token = curl(url, "-H", f"Authorization: Bearer {WRITE}", origin=OTHER, tmp=tmp_path)
    assert with_token.status == 200
    assert_readable_by(with_token, OTHER)  # the origin itself, never `*`
    refused = curl(url, "-H", "Authorization: Bearer unknown", origin=OTHER, tmp=tmp_path)
    assert refused.status == 403
    assert_readable_by(refused, OTHER)
    asks = preflight(srv, OTHER, "GET", "authorization, range", tmp_path)
    assert asks.one("access-control-allow-origin") == OTHER
    assert preflight(srv, OTHER, "GET", "range", tmp_path).one("access-control-allow-origin") == (
        "*"
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [(("--cors-origin", "https://player.example/"), "--cors-origin: 'https://player.example/' "
                                                      "has a path"),
     (("--cors-origin", "player.example"), "is not an origin"),
     (("--cors-credentials",), "--cors-credentials needs --cors-origin"),
     (("--cors-origin", "*", "--cors-credentials"), "--cors-credentials needs --cors-origin")],
)  # fmt: skip
def test_bad_cors_settings_stop_the_start(
    docroot: Path, flags: tuple[str, ...], message: str
) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "ferryman.cli", "serve", str(docroot), "--port", "0", *flags],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr
