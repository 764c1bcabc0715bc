"""A store that fails: throttling, cut bodies, uploads that arrive empty.

ferryman talks to moto through tests/faultproxy.py, which injects each fault
and counts what passes. Whatever fails, a client either gets the right bytes
or a visibly aborted transfer or an error status, and nothing unverified is
recorded.
"""

from __future__ import annotations

import hashlib
import socket
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, pattern
from tests.faultproxy import FaultProxy, Rule
from tests.rawhttp import read_response
from tests.s3server import MotoServer, s3_env

WRITE = "w-token-0123456789"
SIZE = 2 * 1024 * 1024


@pytest.fixture
def through_proxy(moto_server: MotoServer, fault_proxy: FaultProxy, tmp_path: Path):  # type: ignore[no-untyped-def]
    bucket = moto_server.create_bucket()
    moto_server.put_object(bucket, "obj.bin", pattern(SIZE))
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{WRITE} write\n")
    srv = ServerProcess(
        f"s3://{bucket}",  # type: ignore[arg-type]
        "--state-dir", str(tmp_path / "state"), "--allow-write", "--tokens", str(tokens),
        env=s3_env(fault_proxy.url),
    )  # fmt: skip
    yield srv, fault_proxy, tmp_path / "state"
    srv.stop()


def raw_get(srv: ServerProcess, path: str) -> tuple[int, dict[str, str], bytes, bool]:
    """Status, headers, the body bytes that arrived, and whether all of them did."""
    with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        stream = sock.makefile("rb")
        head = read_response(stream, head_request=True)
        headers = {k.lower(): v for k, v in head.headers}
        length = int(headers.get("content-length", "0"))
        body = b""
        while len(body) < length:
            piece = stream.read1(65536)
            if not piece:
                break
            body += piece
        return head.status, headers, body, len(body) == length


def put(srv: ServerProcess, path: str, data: bytes) -> tuple[int, bytes]:
    head = f"PUT {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {WRITE}\r\n"
    with srv.connect(timeout=30) as conn:
        answer = conn.request(f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data)[0]
    return answer.status, answer.body


def test_throttling_is_503_with_retry_after(through_proxy) -> None:  # type: ignore[no-untyped-def]
    srv, proxy, _ = through_proxy
    proxy.add(Rule(method="HEAD", slow_down=True, retry_after=7))
    status, headers, body, _ = raw_get(srv, "/obj.bin")
    assert status == 503
    assert headers["retry-after"] == "7"
    assert b"store_throttled" in body
    assert raw_get(srv, "/obj.bin")[2] == pattern(SIZE)  # the next request is served


@pytest.mark.parametrize("fault", ["reset_after", "truncate_after"])
def test_a_cut_store_body_is_an_aborted_transfer_never_wrong_bytes(
    through_proxy, fault: str
) -> None:  # type: ignore[no-untyped-def]
    srv, proxy, _ = through_proxy
    proxy.add(Rule(method="GET", **{fault: 300_000}))
    status, headers, body, whole = raw_get(srv, "/obj.bin")
    assert status == 200 and headers["content-length"] == str(SIZE)
    assert not whole  # the client sees the transfer end early ...
    assert body == pattern(len(body))  # ... and every byte it got is right


def test_a_store_that_fails_before_any_byte_gives_an_error_status(through_proxy) -> None:  # type: ignore[no-untyped-def]
    srv, proxy, _ = through_proxy
    # Every GET: the HTTP client itself retries once a request that died on a
    # reused keep-alive connection before any answer (the store never saw it).
    proxy.add(Rule(method="GET", no_answer=True, times=None))
    status, _, body, _ = raw_get(srv, "/obj.bin")
    assert status == 502
    assert b"store_failed" in body


def catalogued(state: Path, key: str) -> tuple[int, str] | None:
    with sqlite3.connect(state / "catalog.db") as db:
        row = db.execute("SELECT size, sha256 FROM objects WHERE path = ?", (key,)).fetchone()
    return None if row is None else (row[0], row[1])


def test_an_upload_emptied_on_the_way_is_retried_and_verified(
    through_proxy, moto_server: MotoServer
) -> None:  # type: ignore[no-untyped-def]
    srv, proxy, state = through_proxy
    data = pattern(100_000)
    proxy.add(Rule(method="PUT", empty_body=True))  # the first attempt arrives with 0 bytes
    status, body = put(srv, "/up.bin", data)
    assert status == 201, body
    assert proxy.count("PUT") == 2
    assert "attempt 1 of 3, not verified: the store holds 0 bytes" in srv.log_text()
    assert raw_get(srv, "/up.bin")[2] == data
    assert catalogued(state, "up.bin") == (len(data), hashlib.sha256(data).hexdigest())


def test_an_upload_that_never_verifies_is_502_and_not_recorded(through_proxy) -> None:  # type: ignore[no-untyped-def]
    srv, proxy, state = through_proxy
    proxy.add(Rule(method="PUT", empty_body=True, times=None))
    status, body = put(srv, "/never.bin", pattern(5000))
    assert status == 502
    assert b"store_unverified" in body
    assert proxy.count("PUT") == 3  # --upload-attempts
    assert catalogued(state, "never.bin") is None
