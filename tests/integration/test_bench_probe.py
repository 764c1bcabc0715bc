"""The benchmark's limit probe (bench/peers/probe_peer.py) is minimal but correct
HTTP/1.1: the fixed 1 KiB answer on kept-alive connections, in order when
pipelined, no body for HEAD, close when asked (or HTTP/1.0), 400 and close for
what the parser rejects. Exchanged as raw bytes (bench/answercheck.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.benchpath import BENCH_DIR

assert BENCH_DIR.is_dir()  # bench/ is on sys.path: its modules by plain name

from answercheck import Connection, read_answer, request_bytes  # noqa: E402

BODY = bytes(range(256)) * 4


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    root = tmp_path_factory.mktemp("probe")
    (root / "1k.bin").write_bytes(BODY)
    script = BENCH_DIR / "peers" / "probe_peer.py"
    argv = [sys.executable, str(script), "--root", str(root), "--host", "127.0.0.1"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # its readiness line, or why it could not start
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        yield int(match.group(1))
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_the_fixed_answer_on_a_kept_alive_connection(port: int) -> None:
    with Connection(port) as conn:
        for method in ("GET", "GET", "HEAD", "POST", "GET"):
            answer = conn.ask(method, "/anything")
            assert answer.status == 200
            assert answer.header("content-length") == "1024"
            assert answer.header("date")
            assert answer.body == (b"" if method == "HEAD" else BODY)
            assert not answer.closes


def test_pipelined_requests_are_answered_in_order(port: int) -> None:
    with Connection(port) as conn:
        conn.sock.sendall(request_bytes("HEAD", "/", port) + request_bytes("GET", "/", port))
        assert read_answer(conn.reader, "HEAD").body == b""
        assert read_answer(conn.reader, "GET").body == BODY


def test_close_when_asked(port: int) -> None:
    with Connection(port) as conn:
        answer = conn.ask("GET", "/", ("Connection: close",))
        assert (answer.body, answer.closes) == (BODY, True)
        assert conn.closed_by_server()


def test_http_1_0_closes_unless_kept_alive(port: int) -> None:
    with Connection(port) as conn:
        conn.sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        kept = read_answer(conn.reader, "GET")
        assert (kept.body, kept.header("connection"), kept.closes) == (BODY, "keep-alive", False)
        conn.sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert read_answer(conn.reader, "GET").closes
        assert conn.closed_by_server()


def test_a_request_the_parser_rejects_gets_400_and_close(port: int) -> None:
    with Connection(port) as conn:
        conn.sock.sendall(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        answer = read_answer(conn.reader, "GET")
        assert (answer.status, answer.body, answer.closes) == (400, b"", True)
        assert conn.closed_by_server()
