"""The fault proxy itself, in front of a tiny real HTTP server: does each fault do what it says?"""

from __future__ import annotations

import http.client
import http.server
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.faultproxy import FaultProxy, Rule
from tests.rawhttp import request_bytes
from tests.serverproc import pattern, wait_until


class Upstream(http.server.BaseHTTPRequestHandler):
    """GET/HEAD /N answers pattern(N); PUT records the body it received."""

    protocol_version = "HTTP/1.1"
    received: list[tuple[str, bytes]] = []

    def do_GET(self) -> None:
        body = pattern(int(self.path.strip("/")))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    do_HEAD = do_GET

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.received.append((self.headers.get("Content-Length", ""), self.rfile.read(length)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


_opened: list[http.client.HTTPConnection] = []


@pytest.fixture
def proxy(upstream: str) -> Iterator[FaultProxy]:
    Upstream.received.clear()
    with FaultProxy(upstream) as proxy:
        yield proxy
    while _opened:
        _opened.pop().close()


def connect(proxy: FaultProxy) -> http.client.HTTPConnection:
    """A client connection to the proxy, closed when the test ends."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    _opened.append(conn)
    return conn


def test_relays_exact_bytes_and_keeps_the_client_connection(proxy: FaultProxy) -> None:
    conn = connect(proxy)
    for size in (0, 1, 100_000):
        conn.request("GET", f"/{size}")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, pattern(size))
    conn.request("HEAD", "/5000")
    response = conn.getresponse()
    assert response.getheader("Content-Length") == "5000"
    assert response.read() == b""
    conn.close()
    assert proxy.count("GET") == 3
    assert proxy.count("HEAD") == 1
    assert proxy.count() == 4
    assert proxy.bytes_out == 100_001
    assert proxy.connections == 1


def test_truncate_keeps_content_length_and_closes_after_k_bytes(proxy: FaultProxy) -> None:
    proxy.add(Rule(method="GET", truncate_after=1000))
    conn = connect(proxy)
    conn.request("GET", "/50000")
    response = conn.getresponse()
    assert response.getheader("Content-Length") == "50000"
    with pytest.raises(http.client.IncompleteRead) as cut:
        response.read()
    assert cut.value.partial == pattern(1000)
    assert proxy.bytes_out == 1000


def test_reset_cuts_the_connection_after_k_bytes(proxy: FaultProxy) -> None:
    proxy.add(Rule(method="GET", reset_after=3000))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(request_bytes("GET", "/80000"))
        data = b""
        with pytest.raises(ConnectionResetError):
            while chunk := sock.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Content-Length: 80000" in head
    assert body == pattern(len(body))
    assert len(body) <= 3000
    assert proxy.bytes_out == 3000


def test_no_answer_resets_after_reading_the_request(proxy: FaultProxy) -> None:
    proxy.add(Rule(method="PUT", no_answer=True))
    conn = connect(proxy)
    conn.request("PUT", "/obj", body=b"x" * 100)
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        conn.getresponse()
    assert Upstream.received == []
    assert proxy.count("PUT") == 1


def test_slow_down_answers_503_without_forwarding(proxy: FaultProxy) -> None:
    proxy.add(Rule(method="PUT", slow_down=True, retry_after=7))
    conn = connect(proxy)
    conn.request("PUT", "/obj", body=b"x" * 100)
    response = conn.getresponse()
    assert response.status == 503
    assert response.getheader("Retry-After") == "7"
    assert b"<Code>SlowDown</Code>" in response.read()
    # The rule was used up: the next PUT, on the same connection, goes through.
    conn.request("PUT", "/obj", body=b"y" * 10)
    assert conn.getresponse().status == 200
    assert Upstream.received == [("10", b"y" * 10)]


def test_error_status_answers_an_s3_error_naming_the_endpoint(proxy: FaultProxy) -> None:
    proxy.add(Rule(error_status=500, times=None))
    conn = connect(proxy)
    conn.request("GET", "/100")
    response = conn.getresponse()
    body = response.read()
    assert response.status == 500
    assert b"<Code>InternalError</Code>" in body and f"127.0.0.1:{proxy.port}".encode() in body
    conn.request("HEAD", "/100")  # the same connection goes on; a HEAD answer has no body
    response = conn.getresponse()
    assert (response.status, response.read()) == (500, b"")
    assert proxy.bytes_out == len(body)


def test_empty_body_forwards_content_length_zero(proxy: FaultProxy) -> None:
    proxy.add(Rule(method="PUT", empty_body=True))
    conn = connect(proxy)
    conn.request("PUT", "/obj", body=b"z" * 5000)
    assert conn.getresponse().status == 200
    assert Upstream.received == [("0", b"")]
    assert proxy.log[0].by_name["content-length"] == "5000"


def test_rules_match_on_method_path_and_range_for_n_requests(proxy: FaultProxy) -> None:
    rule = proxy.add(
        Rule(method="GET", path=r"^/2000$", range=r"bytes=0-", times=2, truncate_after=10)
    )
    conn = connect(proxy)
    outcomes = []
    for path, headers in [
        ("/2000", {}),  # no Range: no match
        ("/3000", {"Range": "bytes=0-9"}),  # other path
        ("/2000", {"Range": "bytes=5-9"}),  # other range
        ("/2000", {"Range": "bytes=0-9"}),  # match 1
        ("/2000", {"Range": "bytes=0-"}),  # match 2
        ("/2000", {"Range": "bytes=0-9"}),  # used up
    ]:
        conn.request("GET", path, headers=headers)
        try:
            outcomes.append(len(conn.getresponse().read()))
        except http.client.IncompleteRead as cut:
            outcomes.append(-len(cut.partial))
            conn.close()
            conn = connect(proxy)
    assert outcomes == [2000, 3000, 2000, -10, -10, 2000]
    assert rule.used == 2


def test_latency_delays_but_forwards(proxy: FaultProxy) -> None:
    rule = proxy.add(Rule(latency=0.05, times=None))
    conn = connect(proxy)
    conn.request("GET", "/100")
    assert conn.getresponse().read() == pattern(100)
    assert rule.used == 1


def test_counts_a_client_that_stops_reading(proxy: FaultProxy) -> None:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.sendall(request_bytes("GET", "/50000000"))
    assert sock.recv(4096)
    sock.close()
    assert wait_until(lambda: proxy.aborted == 1, timeout=10)
    assert proxy.bytes_out < 50_000_000
