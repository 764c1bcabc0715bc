"""Hostile clients against a real ferryman: traversal, smuggling, limits, slow and junk peers.

Every request goes over a raw socket exactly as written, so nothing between
the test and the server normalises a path or fixes a header. After an error
the server must close the connection, and bytes sent behind a bad request
(a smuggled second request) must never be answered.
"""

from __future__ import annotations

import json
import os
import posixpath
import random
import re
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.catalog import SqliteCatalog
from tests.rawhttp import Conn, RawResponse, request_bytes
from tests.serverproc import TRANSFER_PATHS, ServerProcess, Servers, wait_until

SMUGGLED = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"
HELLO = b"hello, world\n"
CANARY = b"CANARY-OUTSIDE-ROOT"
HIDDEN_CONTENTS = (CANARY, b"secret", b"SQLite format", b"hidden")  # the catalog's header


@pytest.fixture(scope="module")
def srv(docroot: Path) -> Iterator[ServerProcess]:
    """ferryman with its defaults (the limits and timeouts users get)."""
    proc = ServerProcess(docroot)
    yield proc
    assert proc.stop() == 0, proc.log_text()


@pytest.fixture(scope="module")
def quick(docroot: Path) -> Iterator[ServerProcess]:
    """ferryman with one-second timeouts, for slow-client tests."""
    proc = ServerProcess(
        docroot, "--header-timeout", "1", "--keepalive-timeout", "1", "--send-timeout", "1"
    )
    yield proc
    assert proc.stop() == 0, proc.log_text()


def exchange(server: ServerProcess, raw: bytes) -> RawResponse:
    """Raw bytes on a new connection; the first response."""
    with server.connect(timeout=5) as conn:
        return conn.exchange(raw)[0]


def rest_until_close(conn: Conn, timeout: float) -> bytes | None:
    """Whatever else the server sends before it closes; None if it is still open."""
    conn.sock.settimeout(timeout)
    chunks: list[bytes] = []
    try:
        while True:
            data = conn.stream.read1(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)
    except (ConnectionResetError, BrokenPipeError):
        return b"".join(chunks)
    except TimeoutError:
        return None


def readable(sock: socket.socket, timeout: float) -> bool:
    return bool(select.select([sock], [], [], timeout)[0])


def assert_no_leak(response: RawResponse) -> None:
    # A browse page's script, style and markup (aria-hidden...) are not served content:
    # only its text is searched.
    body = re.sub(rb"<(script|style)[^>]*>.*?</\1>", b"", response.body, flags=re.S)
    body = re.sub(rb"<[^>]*>", b" ", body)
    for secret in HIDDEN_CONTENTS:
        assert secret not in body, f"{secret!r} leaked"


# -- traversal and confinement -------------------------------------------------------

TRAVERSAL = [
    "/../canary.txt",
    "/../../canary.txt",
    "/..%2fcanary.txt",
    "/..%2Fcanary.txt",
    "/%2e%2e/canary.txt",
    "/%2E%2E/canary.txt",
    "/%2e%2e%2fcanary.txt",
    "/.%2e/canary.txt",
    "/%2e./canary.txt",
    "/..%5c..%5ccanary.txt",
    "/%2e%2e%5c%2e%2e%5ccanary.txt",
    "/..\\..\\canary.txt",
    "/..\\canary.txt",
    "/....//canary.txt",
    "/%252e%252e/canary.txt",
    "/%252e%252e%252fcanary.txt",
    "/./../canary.txt",
    "//../canary.txt",
    "/plain/../../canary.txt",
    "/plain/%2e%2e/%2e%2e/canary.txt",
    "/plain/sub/../../../canary.txt",
    "/escape-link",
    "/escape-link/",
    "/escape-dir",
    "/escape-dir/",
    "/escape-dir/canary.txt",
    "//escape-dir/canary.txt",
    "/inside-link/../escape-link",
    "/%00/hello.txt",
    "/hello.txt%00.html",
    "/escape-link%00",
    "/..;/canary.txt",
    "/%c0%ae%c0%ae/canary.txt",
    "/%c0%ae%c0%ae%c0%afcanary.txt",
    "/%e0%80%ae%e0%80%ae/canary.txt",
    "/%uff0e%uff0e/canary.txt",
    "http://x/../canary.txt",
    "http://x/%2e%2e/canary.txt",
    "http://x/escape-link",
    "/.git/config",
    "/.git/",
    "/%2egit/config",
    "/plain/../.git/config",
    "/.ferryman/catalog.db",
    "/%2eferryman/catalog.db",
    "/hidden-link",
    "/plain/.secret",
    "/plain/%2esecret",
    "/fifo",
    "/escape-dir/root/.git/config",
    "/plain/sub/..",
    "/plain/./sub/%2e%2e",
]


@pytest.mark.parametrize("target", TRAVERSAL)
def test_traversal_payload_never_leaves_the_root(srv: ServerProcess, target: str) -> None:
    response = exchange(srv, request_bytes("GET", target))
    assert_no_leak(response)
    if response.status == 301:
        location = response.header("location") or ""
        assert location.startswith("/") and not location.startswith("//"), location
        assert ".." not in location.split("/"), location
        assert posixpath.normpath(location).startswith("/"), location
        followed = exchange(srv, request_bytes("GET", location))
        assert followed.status in (200, 404), (location, followed.status)
        assert_no_leak(followed)
    else:
        assert response.status in (400, 404), (target, response.status, response.body)


def test_double_encoding_is_decoded_once(srv: ServerProcess) -> None:
    """%252e is the literal name '%2e', a file that does not exist: 404, not a climb (400)."""
    assert exchange(srv, request_bytes("GET", "/%252e%252e/canary.txt")).status == 404
    assert exchange(srv, request_bytes("GET", "/%2e%2e/canary.txt")).status == 400


def test_fifo_is_refused_without_blocking(srv: ServerProcess) -> None:
    started = time.monotonic()
    assert exchange(srv, request_bytes("GET", "/fifo")).status == 404
    assert time.monotonic() - started < 1.0, "opening the FIFO must not wait for a writer"


def test_symlink_escapes_are_served_only_with_follow_symlinks(
    srv: ServerProcess, ferryman: Servers
) -> None:
    assert exchange(srv, request_bytes("GET", "/escape-link")).status == 404
    following = ferryman("--follow-symlinks")
    for target in ("/escape-link", "/escape-dir/canary.txt"):
        response = exchange(following, request_bytes("GET", target))
        assert (response.status, response.body) == (200, CANARY), target
    assert exchange(following, request_bytes("GET", "/inside-link")).body == HELLO


@pytest.fixture
def linked_root(tmp_path: Path) -> Path:
    """A root whose symlinks lead into its own state directory and a dotfile."""
    root = tmp_path / "root"
    (root / ".ferryman").mkdir(parents=True)
    SqliteCatalog(root / ".ferryman" / "catalog.db").close()
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("secret")
    (root / "state-link").symlink_to(root / ".ferryman" / "catalog.db")
    (root / "state-dir-link").symlink_to(root / ".ferryman")
    (root / "dot-link").symlink_to(root / ".git" / "config")
    return root


def test_symlinks_into_hidden_places_are_404_by_default(
    ferryman: Servers, linked_root: Path
) -> None:
    confined = ferryman(root=linked_root)
    for target in ("/state-link", "/state-dir-link/catalog.db", "/dot-link"):
        response = exchange(confined, request_bytes("GET", target))
        assert response.status == 404, target
        assert_no_leak(response)


@pytest.mark.parametrize("target", ["/state-link", "/state-dir-link/catalog.db", "/dot-link"])
def test_follow_symlinks_still_hides_the_state_dir_and_dotfiles(
    ferryman: Servers, linked_root: Path, target: str
) -> None:
    """--follow-symlinks lifts confinement to the root only: the state dir is never served."""
    following = ferryman("--follow-symlinks", root=linked_root)
    response = exchange(following, request_bytes("GET", target))
    assert response.status == 404
    assert_no_leak(response)


# -- framing and request smuggling --------------------------------------------------------

BAD_FRAMING = {
    "cl-and-te": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        {400},
    ),
    "te-and-cl": (
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 5\r\n\r\n0\r\n\r\n",
        {400},
    ),
    "two-content-lengths": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcde",
        {400},
    ),
    "two-equal-content-lengths": (
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
        {400},
    ),
    "content-length-plus": (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nabcde", {400}),
    "content-length-minus": (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", {400}),
    "content-length-hex": (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\n", {400}),
    "content-length-list": (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n", {400}),
    "content-length-overflow": (
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        {400},
    ),
    "te-chunked-on-http10": (
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        {400},
    ),
    "te-gzip": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", {400, 501}),
    "te-gzip-chunked": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        {400, 501},
    ),
    "te-chunked-not-last": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        {400},
    ),
    "te-with-space-before-colon": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        {400},
    ),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", {400}),
    "bare-lf": (b"GET / HTTP/1.1\nHost: x\n\n", {400}),
    "bare-lf-in-headers": (b"GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", {400}),
    "bare-cr": (b"GET / HTTP/1.1\rHost: x\r\r", {400}),
    "http09": (b"GET /\r\n", {400}),
    "http09-with-path": (b"GET /hello.txt\r\n", {400}),
    "http2-version": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", {400, 505}),
    "http12-version": (b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", {400, 505}),
    "lowercase-version": (b"GET / http/1.1\r\nHost: x\r\n\r\n", {400}),
    "missing-host": (b"GET / HTTP/1.1\r\n\r\n", {400}),
    "duplicate-host": (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", {400}),
    "duplicate-host-http10": (b"GET / HTTP/1.0\r\nHost: x\r\nHost: y\r\n\r\n", {400}),
    "host-with-space": (b"GET /hello.txt HTTP/1.1\r\nHost: a b\r\n\r\n", {400}),
    "host-with-slash": (b"GET /hello.txt HTTP/1.1\r\nHost: a/b\r\n\r\n", {400}),
    "host-with-userinfo": (b"GET /hello.txt HTTP/1.1\r\nHost: a@b\r\n\r\n", {400}),
    "host-unclosed-ipv6": (b"GET /hello.txt HTTP/1.1\r\nHost: [::1\r\n\r\n", {400}),
    "host-port-not-digits": (b"GET /hello.txt HTTP/1.1\r\nHost: a:port\r\n\r\n", {400}),
    "host-port-out-of-range": (b"GET /hello.txt HTTP/1.1\r\nHost: a:99999\r\n\r\n", {400}),
    "host-empty": (b"GET /hello.txt HTTP/1.1\r\nHost: \r\n\r\n", {400}),
    "host-invalid-http10": (b"GET /hello.txt HTTP/1.0\r\nHost: a b\r\n\r\n", {400}),
    "nul-in-header": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", {400}),
    "header-without-colon": (b"GET / HTTP/1.1\r\nHost: x\r\nJunk\r\n\r\n", {400}),
    "invalid-method-token": (b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", {400, 501}),
    "unknown-method": (b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", {501}),
    "unsupported-target-form": (b"GET ftp://x/hello.txt HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
}


@pytest.mark.parametrize("name", list(BAD_FRAMING))
def test_bad_framing_is_rejected_and_the_smuggled_request_ignored(
    srv: ServerProcess, name: str
) -> None:
    raw, statuses = BAD_FRAMING[name]
    with srv.connect(timeout=5) as conn:
        started = time.monotonic()
        conn.send(raw + SMUGGLED)
        response = conn.read()
        elapsed = time.monotonic() - started
        assert response.status in statuses, response.body
        assert elapsed < 1.0, "a malformed request is answered at once, not after a timeout"
        assert response.header("connection") == "close"
        rest = rest_until_close(conn, timeout=2)
    assert rest is not None, "the server must close the connection after a framing error"
    assert rest == b"", f"the smuggled request was answered: {rest[:200]!r}"


@pytest.mark.parametrize(
    "host", ["[::1]:8000", "[2001:db8::7]", "127.0.0.1", "example.com.:65535", "a:", "x \t"]
)
def test_valid_hosts_are_served_and_invalid_ones_leave_no_traceback(
    srv: ServerProcess, host: str
) -> None:
    response = exchange(srv, request_bytes("GET", "/hello.txt", host=host))
    assert (response.status, response.body) == (200, HELLO)
    bad = exchange(srv, request_bytes("GET", "/hello.txt", host=f"{host}/x"))
    assert (bad.status, json.loads(bad.body)) == (
        400, {"error": "bad_request", "detail": "invalid Host header"}
    )  # fmt: skip
    assert "Traceback" not in srv.log_text()


def test_http10_without_host_is_served(srv: ServerProcess) -> None:
    response = exchange(srv, b"GET /hello.txt HTTP/1.0\r\n\r\n")
    assert (response.status, response.body) == (200, HELLO)


def test_get_with_a_body_is_answered_once_and_the_body_never_parsed(srv: ServerProcess) -> None:
    inner = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"
    body = inner + b"." * (40 - len(inner))
    raw = b"GET /p16.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n" + body
    with srv.connect(timeout=5) as conn:
        [response] = conn.exchange(raw)
        assert response.status == 200
        assert len(response.body) == 16
        rest = rest_until_close(conn, timeout=2)
    assert rest == b"", "exactly one response, then the connection closes"


def test_pipelined_requests_after_a_bad_one_are_never_answered(srv: ServerProcess) -> None:
    good = request_bytes("GET", "/p16.bin")
    with srv.connect(timeout=5) as conn:
        no_host = request_bytes("GET", "/x", host=None)
        first = conn.exchange(good + no_host + good + good)[0]
        assert first.status == 200
        assert conn.read().status == 400  # missing Host
        assert rest_until_close(conn, timeout=2) == b""


def test_connection_close_from_the_client_is_honoured(srv: ServerProcess) -> None:
    """RFC 9112 9.6: answer, say `Connection: close`, then close; later requests are dropped."""
    close = request_bytes("GET", "/hello.txt", {"Connection": "close"})
    with srv.connect(timeout=5) as conn:
        response = conn.exchange(close + SMUGGLED)[0]
        assert (response.status, response.body) == (200, HELLO)
        assert response.header("connection") == "close"
        assert rest_until_close(conn, timeout=2) == b""


def test_http10_keep_alive_is_honoured(srv: ServerProcess) -> None:
    keep_alive = {"Connection": "keep-alive"}
    keep = request_bytes("GET", "/hello.txt", keep_alive, host=None, version="HTTP/1.0")
    with srv.connect(timeout=5) as conn:
        first, second = conn.exchange(keep + keep, count=2)
        assert first.body == second.body == HELLO
        assert first.header("connection") == "keep-alive"


# -- intake limits ----------------------------------------------------------------------------


def request_line(length: int) -> bytes:
    """A request line of exactly `length` bytes (CRLF not counted) for /hello.txt."""
    pad = length - len("GET /hello.txt? HTTP/1.1")
    return request_bytes("GET", "/hello.txt?" + "q" * pad)


def many_headers(count: int) -> bytes:
    """`count` header fields in all, Host included."""
    return request_bytes("GET", "/hello.txt", {f"X-{i}": "v" for i in range(count - 1)})


def header_section(size: int) -> bytes:
    """A head whose header section (every field line and the blank line) is `size` bytes."""
    value = "v" * (size - len("Host: t\r\nX-Pad: \r\n\r\n"))
    return request_bytes("GET", "/hello.txt", {"X-Pad": value})


LIMIT_CASES = [
    pytest.param(((), 8192, 100, 32768), id="defaults"),
    pytest.param(
        (("--max-request-line", "256", "--max-header-count", "8", "--max-header-bytes", "1k"),
         256, 8, 1024),
        id="configured",
    ),
]  # fmt: skip


@pytest.fixture(scope="module", params=LIMIT_CASES)
def limited(
    request: pytest.FixtureRequest, docroot: Path
) -> Iterator[tuple[ServerProcess, int, int, int]]:
    args, line, count, size = request.param
    proc = ServerProcess(docroot, *args)
    yield proc, line, count, size
    assert proc.stop() == 0, proc.log_text()


def assert_rejected(server: ServerProcess, raw: bytes, status: int) -> None:
    with server.connect(timeout=5) as conn:
        [response] = conn.exchange(raw)
        assert response.status == status, response.body
        assert rest_until_close(conn, timeout=2) == b""


def test_request_line_at_the_limit_is_served_and_one_more_byte_is_414(
    limited: tuple[ServerProcess, int, int, int],
) -> None:
    server, line, _, _ = limited
    assert exchange(server, request_line(line)).body == HELLO
    assert_rejected(server, request_line(line + 1), 414)


def test_header_count_at_the_limit_is_served_and_one_more_is_431(
    limited: tuple[ServerProcess, int, int, int],
) -> None:
    server, _, count, _ = limited
    assert exchange(server, many_headers(count)).body == HELLO
    assert_rejected(server, many_headers(count + 1), 431)


def test_header_section_at_the_limit_is_served_and_one_more_byte_is_431(
    limited: tuple[ServerProcess, int, int, int],
) -> None:
    server, _, _, size = limited
    assert exchange(server, header_section(size)).body == HELLO
    assert_rejected(server, header_section(size + 1), 431)


def test_an_endless_request_line_is_cut_at_the_limit(srv: ServerProcess) -> None:
    """1 MiB of target: 414 without the server buffering (or waiting for) all of it."""
    with srv.connect(timeout=5) as conn:
        try:
            conn.send(b"GET /" + b"a" * (1 << 20))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while we were still sending
        assert conn.read().status == 414


# -- slow clients -----------------------------------------------------------------------------


def test_trickling_head_gets_408_within_the_header_timeout(quick: ServerProcess) -> None:
    head = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    with quick.connect(timeout=5) as conn:
        started = time.monotonic()
        answered = False
        for byte in head:
            try:
                conn.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                answered = True
                break
            if readable(conn.sock, 0.2):
                answered = True
                break
        elapsed = time.monotonic() - started
        assert answered, "the server waited for the whole trickled head"
        assert 0.9 <= elapsed <= 2.5, elapsed
        rest = rest_until_close(conn, timeout=2)
    assert rest is not None, "the connection must be closed after the header timeout"
    assert rest == b"" or rest.startswith(b"HTTP/1.1 408 "), rest[:100]


def test_idle_keepalive_connection_is_closed_after_the_keepalive_timeout(
    quick: ServerProcess,
) -> None:
    with quick.connect(timeout=5) as conn:
        assert conn.get("/hello.txt").status == 200
        started = time.monotonic()
        assert conn.closed_by_peer(timeout=3)
        assert 0.8 <= time.monotonic() - started <= 2.0


def test_silent_connection_is_closed_after_the_header_timeout(quick: ServerProcess) -> None:
    with quick.connect(timeout=5) as conn:
        started = time.monotonic()
        rest = rest_until_close(conn, timeout=3)
        elapsed = time.monotonic() - started
    assert rest == b"", "nothing was asked, so nothing is answered"
    assert 0.8 <= elapsed <= 2.5, elapsed


def connect_with_small_buffer(server: ServerProcess) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect((server.host, server.port))
    return sock


def receive_all(sock: socket.socket) -> int:
    total = 0
    try:
        while data := sock.recv(1 << 20):
            total += len(data)
    except ConnectionResetError:
        pass
    return total


@pytest.mark.parametrize("path", TRANSFER_PATHS)
def test_client_that_never_reads_is_cut_after_the_send_timeout(
    ferryman: Servers, tmp_path: Path, path: tuple[str, str]
) -> None:
    big = 64 << 20  # far more than any socket buffers hold, so the server must stall
    (tmp_path / "hello.txt").write_bytes(HELLO)
    with open(tmp_path / "big.bin", "wb") as sparse:
        sparse.truncate(big)
    loop, sendfile = path
    server = ferryman("--loop", loop, "--sendfile", sendfile, "--send-timeout", "1", root=tmp_path)
    with connect_with_small_buffer(server) as stalled:
        stalled.sendall(request_bytes("GET", "/big.bin"))
        cut = wait_until(lambda: "no progress sending" in server.log_text(), timeout=5)
        with server.connect(timeout=5) as other:
            assert other.get("/hello.txt").body == HELLO, "others are served meanwhile"
        assert cut, "the stalled client was not disconnected"
        received = receive_all(stalled)
    assert received < big, "the stalled client cannot have received the whole file"
    assert server.proc.poll() is None
    assert "Traceback" not in server.log_text()


@pytest.mark.parametrize("path", TRANSFER_PATHS)
def test_a_file_that_shrinks_under_a_blocked_transfer_ends_it_at_once(
    ferryman: Servers, tmp_path: Path, path: tuple[str, str]
) -> None:
    big = 64 << 20
    (tmp_path / "hello.txt").write_bytes(HELLO)
    with open(tmp_path / "big.bin", "wb") as sparse:
        sparse.truncate(big)
    loop, sendfile = path
    log = tmp_path / "access.jsonl"
    server = ferryman(
        "--loop", loop, "--sendfile", sendfile, "--send-timeout", "30",
        "--access-log", str(log), "--access-log-format", "json", root=tmp_path,
    )  # fmt: skip
    with connect_with_small_buffer(server) as reader:
        reader.sendall(request_bytes("GET", "/big.bin"))
        time.sleep(0.5)  # the socket's buffers fill and the transfer waits for room
        os.truncate(tmp_path / "big.bin", 0)
        received = receive_all(reader)  # EOF in seconds (recv times out after 5), not at 30 s
    assert received < big
    with server.connect(timeout=5) as other:
        assert other.get("/hello.txt").body == HELLO
    server.stop()
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    cut = next(e for e in entries if e["target"] == "/big.bin")
    assert cut["status"] == 200 and 0 < cut["bytes"] < big, cut
    assert cut["error"] == "file shrank while being sent", cut
    assert "Traceback" not in server.log_text()
    assert "Exception in callback" not in server.log_text()


# -- connection limit ---------------------------------------------------------------------------


def test_connection_limit_holds_new_clients_in_the_backlog_until_a_slot_frees(
    ferryman: Servers,
) -> None:
    server = ferryman("--max-connections", "2")
    first, second = server.connect(timeout=5), server.connect(timeout=5)
    try:
        for conn in (first, second):
            assert conn.get("/hello.txt").status == 200  # both accepted and kept alive
        with server.connect(timeout=5) as third:  # TCP handshake done by the kernel
            third.send(request_bytes("GET", "/hello.txt"))
            assert not readable(third.sock, 1.0), "a third connection was served at the limit"
            first.close()
            response = third.read()
            assert (response.status, response.body) == (200, HELLO)
            assert second.get("/hello.txt").status == 200, "the open slot still works"
    finally:
        first.close()
        second.close()


# -- error bodies ------------------------------------------------------------------------------

APP_ERRORS = {
    "bad-path": (request_bytes("GET", "/../canary.txt"), 400),
    "not-found": (request_bytes("GET", "/missing.txt"), 404),
    "method": (request_bytes("DELETE", "/hello.txt"), 405),
    "range": (request_bytes("GET", "/p16.bin", {"Range": "bytes=100-"}), 416),
    "expect": (request_bytes("GET", "/hello.txt", {"Expect": "magic"}), 417),
}


def with_accept(raw: bytes, accept: str) -> bytes:
    return raw.replace(b"Host: t\r\n", f"Host: t\r\nAccept: {accept}\r\n".encode(), 1)


@pytest.mark.parametrize("name", list(APP_ERRORS))
def test_errors_are_json_for_api_clients(srv: ServerProcess, name: str) -> None:
    raw, status = APP_ERRORS[name]
    response = exchange(srv, with_accept(raw, "*/*"))
    assert response.status == status
    assert response.header("content-type") == "application/json"
    payload = json.loads(response.body)
    assert set(payload) == {"error", "detail"}
    assert b"Traceback" not in response.body


@pytest.mark.parametrize("name", list(APP_ERRORS))
def test_errors_are_small_html_pages_for_browsers(srv: ServerProcess, name: str) -> None:
    raw, status = APP_ERRORS[name]
    accept = "text/html,application/xhtml+xml,*/*;q=0.8"
    response = exchange(srv, with_accept(raw, accept))
    assert response.status == status
    assert (response.header("content-type") or "").startswith("text/html")
    assert f"<title>{status} ".encode() in response.body and b'<a href="/">' in response.body
    assert b"Traceback" not in response.body


@pytest.mark.parametrize("name", ["cl-and-te", "obs-fold", "http09", "missing-host", "te-gzip"])
def test_protocol_errors_are_json_without_a_traceback(srv: ServerProcess, name: str) -> None:
    """The head of a malformed request is not trusted, Accept included: always JSON."""
    raw, _ = BAD_FRAMING[name]
    response = exchange(srv, raw)
    assert response.header("content-type") == "application/json"
    assert set(json.loads(response.body)) == {"error", "detail"}
    assert b"Traceback" not in response.body


# -- junk ----------------------------------------------------------------------------------------


def junk(rng: random.Random, index: int) -> bytes:
    """Pure noise for even indexes, a valid request with a few bytes flipped for odd ones."""
    if index % 2 == 0:
        return rng.randbytes(rng.randint(1, 4096))
    data = bytearray(request_bytes("GET", "/hello.txt", {"Range": "bytes=0-4"}))
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def test_two_hundred_junk_connections_do_not_hurt_the_server(srv: ServerProcess) -> None:
    rng = random.Random(20240611)
    conns = [srv.connect(timeout=5) for _ in range(200)]
    try:
        for index, conn in enumerate(conns):
            try:
                conn.send(junk(rng, index))
                conn.sock.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass  # already rejected and closed
        for conn in conns:
            rest = rest_until_close(conn, timeout=5)
            assert rest is not None, "a junk connection was left open after the client's EOF"
            if rest:
                status = int(rest.split(b" ", 2)[1])
                assert 200 <= status < 500 or status in (501, 505), rest[:200]
    finally:
        for conn in conns:
            conn.close()
    assert exchange(srv, request_bytes("GET", "/hello.txt")).body == HELLO
    assert srv.proc.poll() is None
    assert "Traceback" not in srv.log_text()
