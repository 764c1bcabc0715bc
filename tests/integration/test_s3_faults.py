"""A store that fails: throttling, cut bodies, uploads that arrive empty.

ferryman talks to moto through tests/faultproxy.py, which injects each fault
and counts what passes. Whatever fails, a client either gets the right bytes
or a visibly aborted transfer or an error status, and nothing unverified is
recorded.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from tests.faultproxy import FaultProxy, Rule
from tests.s3server import MotoServer
from tests.serverproc import ServerProcess, pattern
from tests.writing import Writable, put

SIZE = 2 * 1024 * 1024

ThroughProxy = tuple[ServerProcess, FaultProxy, Path]  # the server, its store's proxy, its state


@pytest.fixture
def through_proxy(
    writable: Writable, moto_server: MotoServer, fault_proxy: FaultProxy, tmp_path: Path
) -> ThroughProxy:
    bucket = moto_server.create_bucket()
    moto_server.put_object(bucket, "obj.bin", pattern(SIZE))
    srv = writable(root=f"s3://{bucket}", s3_endpoint=fault_proxy.url)
    return srv, fault_proxy, tmp_path / "state"


def test_throttling_is_503_with_retry_after(through_proxy: ThroughProxy) -> None:
    srv, proxy, _ = through_proxy
    proxy.add(Rule(method="HEAD", slow_down=True, retry_after=7))
    r = srv.get("/obj.bin")
    assert r.status == 503
    assert r.header("retry-after") == "7"
    assert b"store_throttled" in r.body
    assert srv.get("/obj.bin").body == pattern(SIZE)  # the next request is served


@pytest.mark.parametrize(
    "fault",
    [Rule(method="GET", reset_after=300_000), Rule(method="GET", truncate_after=300_000)],
    ids=["reset_after", "truncate_after"],
)
def test_a_cut_store_body_is_an_aborted_transfer_never_wrong_bytes(
    through_proxy: ThroughProxy, fault: Rule
) -> None:
    srv, proxy, _ = through_proxy
    proxy.add(fault)
    r = srv.get("/obj.bin")
    assert r.status == 200 and r.header("content-length") == str(SIZE)
    assert not r.whole  # the client sees the transfer end early ...
    assert r.body == pattern(len(r.body))  # ... and every byte it got is right


def test_a_store_that_fails_before_any_byte_gives_an_error_status(
    through_proxy: ThroughProxy,
) -> None:
    srv, proxy, _ = through_proxy
    # Every GET: the HTTP client itself retries once a request that died on a
    # reused keep-alive connection before any answer (the store never saw it).
    proxy.add(Rule(method="GET", no_answer=True, times=None))
    r = srv.get("/obj.bin")
    assert r.status == 502
    assert b"store_failed" in r.body


def catalogued(state: Path, key: str) -> tuple[int, str] | None:
    with sqlite3.connect(state / "catalog.db") as db:
        row = db.execute("SELECT size, sha256 FROM objects WHERE path = ?", (key,)).fetchone()
    return None if row is None else (row[0], row[1])


def test_an_upload_emptied_on_the_way_is_retried_and_verified(through_proxy: ThroughProxy) -> None:
    srv, proxy, state = through_proxy
    data = pattern(100_000)
    proxy.add(Rule(method="PUT", empty_body=True))  # the first attempt arrives with 0 bytes
    r = put(srv, "/up.bin", data)
    assert r.status == 201, r.body
    assert proxy.count("PUT") == 2
    assert "attempt 1 of 3, not verified: the store holds 0 bytes" in srv.log_text()
    assert srv.get("/up.bin").body == data
    assert catalogued(state, "up.bin") == (len(data), hashlib.sha256(data).hexdigest())


def test_an_upload_that_never_verifies_is_502_and_not_recorded(through_proxy: ThroughProxy) -> None:
    srv, proxy, state = through_proxy
    proxy.add(Rule(method="PUT", empty_body=True, times=None))
    r = put(srv, "/never.bin", pattern(5000))
    assert r.status == 502
    assert b"store_unverified" in r.body
    assert proxy.count("PUT") == 3  # --upload-attempts
    assert catalogued(state, "never.bin") is None
