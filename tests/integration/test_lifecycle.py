"""Start, stop, drain, log, and release: the life of the server and of each body."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.rawhttp import request_bytes
from tests.serverproc import Servers, pattern, wait_until
from tests.slowclient import SlowDownload

BIG = 5 * 1024 * 1024 + 7


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_sigterm_lets_slow_downloads_finish(ferryman: Servers, loop: str) -> None:
    srv = ferryman("--loop", loop)
    downloads = [SlowDownload(srv, f"/p{BIG}.bin").start() for _ in range(5)]
    time.sleep(0.3)  # let the transfers begin; the point is to stop mid-transfer
    srv.signal(signal.SIGTERM)
    assert wait_until(lambda: "stopping" in srv.log_text(), 5), srv.log_text()
    with pytest.raises(OSError):  # the listener is closed: no new connections
        socket.create_connection((srv.host, srv.port), timeout=2).close()
    for d in downloads:
        d.join(60)
    for d in downloads:
        assert d.body() == pattern(BIG)
    assert srv.wait(10) == 0
    assert "stopped" in srv.log_text()


def test_grace_period_ends_stalled_transfers(ferryman: Servers) -> None:
    srv = ferryman("--grace-period", "1")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((srv.host, srv.port))
    sock.sendall(request_bytes("GET", f"/p{BIG}.bin"))
    sock.recv(100)  # the transfer has started; now stall
    started = time.monotonic()
    srv.signal(signal.SIGTERM)
    assert srv.wait(10) == 0
    assert time.monotonic() - started < 5
    assert "grace period over" in srv.log_text()
    sock.close()


def test_idle_connections_close_at_once_on_stop(ferryman: Servers) -> None:
    srv = ferryman()
    with srv.connect() as conn:
        assert conn.get("/hello.txt").status == 200
        started = time.monotonic()
        srv.signal(signal.SIGINT)
        assert conn.closed_by_peer(5)
    assert srv.wait(10) == 0
    assert time.monotonic() - started < 5


def test_bodies_release_their_descriptors_however_transfers_end(ferryman: Servers) -> None:
    for sendfile in ("on", "off"):
        srv = ferryman("--sendfile", sendfile)
        (pid,) = srv.child_pids()  # the one worker
        with srv.connect() as conn:  # warm up: lazily made descriptors exist now,
            conn.get("/hello.txt")  # and the one --open-files keeps for the big file
            assert conn.get(f"/p{BIG}.bin").body == pattern(BIG)
        baseline = open_fds(pid)
        for _ in range(5):  # completed
            with srv.connect() as conn:
                assert conn.get(f"/p{BIG}.bin").body == pattern(BIG)
        for _ in range(5):  # cut by the peer halfway
            sock = socket.create_connection((srv.host, srv.port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
            sock.sendall(request_bytes("GET", f"/p{BIG}.bin"))
            sock.recv(4096)
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            sock.close()  # RST
        settled = wait_until(lambda: open_fds(pid) <= baseline, 5)  # noqa: B023
        assert settled, (open_fds(pid), baseline)
        with srv.connect() as conn:
            assert conn.get("/p1000.bin").body == pattern(1000)


def run_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferryman.cli", *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_port_in_use_is_a_boot_failure(ferryman: Servers) -> None:
    srv = ferryman()
    done = run_cli("serve", ".", "--port", str(srv.port))
    assert done.returncode == 2
    assert "cannot listen" in done.stderr and "listening on" not in done.stderr


def test_missing_source_is_a_boot_failure(tmp_path: Path) -> None:
    done = run_cli("serve", str(tmp_path / "nope"), "--port", "0")
    assert done.returncode == 2
    assert "not a readable directory" in done.stderr


def test_bad_flag_value_is_a_boot_failure() -> None:
    done = run_cli("serve", ".", "--header-timeout", "soon")
    assert done.returncode == 2
    assert "--header-timeout" in done.stderr


def test_environment_configures_the_server(ferryman: Servers) -> None:
    srv = ferryman(env={"FERRYMAN_CACHE_CONTROL": "no-cache", "FERRYMAN_HOST": "127.0.0.1"})
    with srv.connect() as conn:
        assert conn.get("/hello.txt").header("cache-control") == "no-cache"


def test_json_access_log(ferryman: Servers, tmp_path: Path) -> None:
    log = tmp_path / "access.jsonl"
    srv = ferryman("--access-log", str(log), "--access-log-format", "json")
    with srv.connect() as conn:
        conn.get("/p1000.bin", {"Range": "bytes=0-99", "User-Agent": 'tester "1"'})
        conn.get("/missing")
    srv.stop()
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["method"], e["target"], e["status"], e["bytes"]) for e in entries] == [
        ("GET", "/p1000.bin", 206, 100),
        ("GET", "/missing", 404, entries[1]["bytes"]),
    ]
    assert entries[0]["user_agent"] == 'tester "1"' and entries[0]["remote"] == "127.0.0.1"


def test_combined_access_log_on_stdout(ferryman: Servers) -> None:
    srv = ferryman("--access-log", "-", stdout=subprocess.PIPE)
    with srv.connect() as conn:
        conn.get("/hello.txt", {"Referer": "http://ref/", "User-Agent": "ua"})
    srv.signal(signal.SIGTERM)
    out, _ = srv.proc.communicate(timeout=10)
    line = out.strip().splitlines()[0]
    assert re.fullmatch(
        r"127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "
        r'"GET /hello\.txt HTTP/1\.1" 200 13 "http://ref/" "ua"',
        line,
    ), line


def test_access_log_is_off_by_default(ferryman: Servers) -> None:
    srv = ferryman(stdout=subprocess.PIPE)
    with srv.connect() as conn:
        conn.get("/hello.txt")
    srv.signal(signal.SIGTERM)
    out, _ = srv.proc.communicate(timeout=10)
    assert out == ""


def test_slow_but_steady_client_is_not_cut_by_send_timeout(ferryman: Servers) -> None:
    """--send-timeout ends stalled clients, not slow ones: 200 KB/s for 5 s, 2 s timeout.

    (On loopback a reader opens the TCP window only every ~128 KB it consumes,
    so much slower readers really are indistinguishable from stalled ones at
    this timeout; the default timeout is 60 s.)
    """
    for sendfile in ("on", "off"):
        srv = ferryman("--send-timeout", "2", "--sendfile", sendfile)
        sock = socket.create_connection((srv.host, srv.port), timeout=5)  # default buffers:
        # the kernel queues megabytes, so the socket turns writable only rarely
        sock.sendall(request_bytes("GET", f"/p{BIG}.bin"))
        received, start = 0, time.monotonic()
        while time.monotonic() - start < 5:
            chunk = sock.recv(4096)
            assert chunk, f"cut after {received} bytes (sendfile {sendfile})"
            received += len(chunk)
            time.sleep(max(0.0, received / 200_000 - (time.monotonic() - start)))
        sock.close()
        assert received > 500_000
        assert "no progress sending" not in srv.log_text(), f"cut (sendfile {sendfile})"


def test_unopenable_access_log_is_a_boot_failure(tmp_path: Path) -> None:
    done = run_cli("serve", str(tmp_path), "--port", "0", "--access-log", "/nonexistent/dir/log")
    assert done.returncode == 2
    assert "cannot open --access-log" in done.stderr and "Traceback" not in done.stderr


def test_sighup_reopens_the_access_log(ferryman: Servers, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    srv = ferryman("--access-log", str(log))
    with srv.connect() as conn:
        conn.get("/hello.txt")
    assert wait_until(lambda: log.exists() and log.stat().st_size > 0, 5)
    log.rename(tmp_path / "access.log.1")
    srv.signal(signal.SIGHUP)
    assert wait_until(log.exists, 5)
    with srv.connect() as conn:
        conn.get("/p16.bin")
    assert wait_until(lambda: "/p16.bin" in log.read_text(), 5)
    assert "/p16.bin" not in (tmp_path / "access.log.1").read_text()


RAISE_ON_BOOM = {"FERRYMAN_TEST_HOOKS": "1", "FERRYMAN_TEST_RAISE_ON": "/boom"}


def test_a_handler_bug_is_one_log_line_whose_id_the_client_gets(ferryman: Servers) -> None:
    srv = ferryman(env=RAISE_ON_BOOM)
    with srv.connect() as conn:
        first = conn.get("/boom")
        second = conn.get("/boom", {"Accept": "text/plain"})
        assert conn.get("/hello.txt").status == 200  # the same connection goes on
    ids = []
    for response in (first, second):
        assert response.status == 500
        request_id = response.header("x-request-id") or ""
        assert re.fullmatch(r"[0-9a-f]{16}", request_id), response.headers
        assert f"request {request_id} failed" in response.body.decode()
        ids.append(request_id)
    assert ids[0] != ids[1]
    assert wait_until(lambda: all(f"request {i} failed" in srv.log_text() for i in ids), 5)
    for request_id in ids:
        [line] = [line for line in srv.lines if request_id in line]
        assert re.search(
            rf"ERROR request {request_id} failed: InjectedFault: FERRYMAN_TEST_RAISE_ON: failing "
            r"b'/boom' on purpose \(at ferryman/supervisor/hooks\.py:\d+ in failing\) GET /boom$",
            line,
        ), line
    assert "Traceback" not in srv.log_text()


def test_ferryman_tracebacks_adds_the_traceback_under_the_line(ferryman: Servers) -> None:
    srv = ferryman(env={**RAISE_ON_BOOM, "FERRYMAN_TRACEBACKS": "1"})
    with srv.connect() as conn:
        request_id = conn.get("/boom").header("x-request-id")
    assert wait_until(lambda: "Traceback" in srv.log_text(), 5), srv.log_text()
    text = srv.log_text()
    assert text.index(f"request {request_id} failed") < text.index("Traceback")
    assert 'hooks.py", line' in text
