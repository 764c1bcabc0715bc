"""The arbiter and its workers, with real processes and real signals.

Faults are injected through the TEST-ONLY hooks of ferryman.supervisor.hooks
(FERRYMAN_TEST_HOOKS=1 plus one FERRYMAN_TEST_* variable); production never
sets them. Every wait polls the log or the socket with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.rawhttp import request_bytes
from tests.serverproc import CI, ServerProcess, Servers, pattern, wait_until
from tests.slowclient import SlowDownload

BIG = 5 * 1024 * 1024 + 7
READY = re.compile(r"ferryman\[(\d+)\] INFO worker (\d+) ready")
HOOKS = {"FERRYMAN_TEST_HOOKS": "1"}


def ready_workers(srv: ServerProcess) -> list[tuple[int, int]]:
    """(slot, pid) of every worker that reported ready, in order."""
    found = (READY.search(line) for line in list(srv.lines))
    return [(int(m.group(2)), int(m.group(1))) for m in found if m]


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferryman.cli", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )  # fmt: skip


# -- crashes ------------------------------------------------------------------------


def test_sigkill_mid_download_then_resume_with_if_range(ferryman: Servers, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    source = os.urandom(8 * 1024 * 1024)
    (root / "big.bin").write_bytes(source)
    srv = ferryman("--workers", "1", root=root)
    [(_, pid)] = ready_workers(srv)

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.settimeout(10)
    sock.connect((srv.host, srv.port))
    sock.sendall(request_bytes("GET", "/big.bin"))
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += sock.recv(16384)
    head, _, body = raw.partition(b"\r\n\r\n")
    found = re.search(rb"(?i)etag: (\S+)", head)
    assert found, head
    etag = found.group(1).decode()
    received = bytearray(body)
    while len(received) < 1024 * 1024:  # a slow reader, a megabyte in
        received += sock.recv(16384)
        time.sleep(0.001)
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    sock.close()
    assert len(received) < len(source), "the transfer should have broken"

    # A replacement accepts within a second of the kill.
    response = srv.get("/big.bin", {"Range": "bytes=0-0"})
    assert response.status == 206
    assert time.monotonic() - killed < 1.0
    assert wait_until(lambda: len(ready_workers(srv)) == 2, 5)
    assert f"worker 1 (pid {pid}) was killed by SIGKILL; starting a replacement" in srv.log_text()

    # Resume where the transfer broke, pinned to the same version of the file.
    rest = srv.get("/big.bin", {"Range": f"bytes={len(received)}-", "If-Range": etag})
    assert rest.status == 206
    assert rest.header("content-range") == (
        f"bytes {len(received)}-{len(source) - 1}/{len(source)}"
    )
    whole = bytes(received) + rest.body
    assert hashlib.sha256(whole).hexdigest() == hashlib.sha256(source).hexdigest()


def test_a_worker_crashing_at_every_start_spends_the_budget(tmp_path: Path) -> None:
    env = {**HOOKS, "FERRYMAN_TEST_CRASH_AT_START": "1"}
    started = time.monotonic()
    done = run_cli("serve", str(tmp_path), "--port", "0", "--max-restarts", "3",
                   "--restart-window", "10s", env=env)  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert time.monotonic() - started < 10  # within the restart window
    reasons = [line for line in done.stderr.splitlines() if "giving up" in line]
    assert len(reasons) == 1, done.stderr
    assert "exited with status 1" in reasons[0] and "--max-restarts 3" in reasons[0]
    assert done.stderr.count("started worker 1") == 4  # the first start and three restarts
    assert "listening on" not in done.stderr


def test_a_worker_boot_failure_stops_at_once_without_respawning(tmp_path: Path) -> None:
    """What the arbiter's boot step checked can change before a worker starts: the
    worker's own check then fails (here on purpose), and the arbiter stops with it."""
    env = {**HOOKS, "FERRYMAN_TEST_BOOT_FAIL": "1"}
    done = run_cli("serve", str(tmp_path), "--port", "0", "--workers", "2", env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("started worker") == 1
    assert done.stderr.count("FERRYMAN_TEST_BOOT_FAIL") == 1
    assert "cannot start:" in done.stderr and "Traceback" not in done.stderr


def test_an_unopenable_access_log_stops_the_arbiter_before_any_worker(tmp_path: Path) -> None:
    done = run_cli("serve", str(tmp_path), "--port", "0", "--workers", "2",
                   "--access-log", str(tmp_path / "missing" / "access.log"))  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "started worker" not in done.stderr
    assert done.stderr.count("cannot open --access-log") == 1
    assert "cannot start:" in done.stderr and "Traceback" not in done.stderr


def test_too_many_crashes_while_serving_stop_the_server_with_status_3(ferryman: Servers) -> None:
    srv = ferryman("--max-restarts", "1", "--restart-window", "1m")
    os.kill(ready_workers(srv)[0][1], signal.SIGKILL)
    assert wait_until(lambda: len(ready_workers(srv)) == 2, 5), srv.log_text()
    assert srv.get("/hello.txt").status == 200
    os.kill(ready_workers(srv)[1][1], signal.SIGKILL)
    assert srv.wait(10) == 3
    assert "giving up" in srv.log_text() and "stopped (status 3)" in srv.log_text()


def test_workers_are_permanent_even_after_a_clean_exit(ferryman: Servers) -> None:
    srv = ferryman("--workers", "2")
    _, pid = ready_workers(srv)[1]
    os.kill(pid, signal.SIGTERM)  # not through the arbiter: nobody asked it to stop
    assert wait_until(lambda: len(ready_workers(srv)) == 3, 5), srv.log_text()
    assert f"worker 2 (pid {pid}) exited with status 0; starting a replacement" in srv.log_text()
    assert ready_workers(srv)[2][0] == 2
    assert srv.stop() == 0


def test_a_handler_exception_costs_only_that_response(ferryman: Servers) -> None:
    srv = ferryman(env={**HOOKS, "FERRYMAN_TEST_RAISE_ON": "/boom"})
    with srv.connect() as conn:
        assert conn.get("/boom").status == 500
        assert conn.get("/hello.txt").body == b"hello, world\n"  # same connection
    assert len(ready_workers(srv)) == 1 and "replacement" not in srv.log_text()
    # its one line names the failure (read from the worker's stderr by another thread)
    assert wait_until(lambda: "FERRYMAN_TEST_RAISE_ON" in srv.log_text(), 5), srv.log_text()


def test_a_blocked_event_loop_is_killed_and_replaced(ferryman: Servers) -> None:
    env = {**HOOKS, "FERRYMAN_TEST_BLOCK_LOOP_AFTER": "0.2", "FERRYMAN_TEST_HOOK_SPAWNS": "1"}
    srv = ferryman("--heartbeat-timeout", "1", env=env)
    [(_, pid)] = ready_workers(srv)
    assert wait_until(lambda: "no heartbeat" in srv.log_text(), 5), srv.log_text()
    assert wait_until(lambda: len(ready_workers(srv)) == 2, 5), srv.log_text()
    text = srv.log_text()
    assert re.search(rf"worker 1 \(pid {pid}\): no heartbeat for 1\.\d+s .* killing it", text)
    assert f"worker 1 (pid {pid}) was killed by SIGKILL (no heartbeat for" in text
    assert srv.get("/hello.txt").status == 200  # the replacement serves
    assert srv.stop() == 0


def test_a_worker_that_ignores_the_stop_is_killed_and_the_exit_says_so(ferryman: Servers) -> None:
    env = {**HOOKS, "FERRYMAN_TEST_BLOCK_LOOP_AFTER": "0.2"}
    srv = ferryman("--heartbeat-timeout", "60", "--grace-period", "1", env=env)
    [(_, pid)] = ready_workers(srv)
    time.sleep(0.5)  # its loop is blocked now: SIGTERM's handler never runs
    srv.signal(signal.SIGTERM)
    assert srv.wait(30) == 1  # not a clean stop
    text = srv.log_text()
    assert re.search(rf"worker 1 \(pid {pid}\) still running \d+s after SIGTERM: killing it", text)


def test_the_workers_stop_when_the_arbiter_is_killed(ferryman: Servers) -> None:
    srv = ferryman("--workers", "2")
    pids = [pid for _, pid in ready_workers(srv)]
    srv.proc.kill()
    srv.proc.wait(5)
    # They notice at their next heartbeat (EPIPE) and stop instead of serving unsupervised.
    assert wait_until(lambda: all(gone(pid) for pid in pids), 5)
    text = srv.log_text()
    for slot in (1, 2):  # each names itself, as docs/operations.md shows the line
        assert f"WARNING worker {slot}: the arbiter is gone; stopping" in text


# -- start and stop -------------------------------------------------------------------


def test_workers_start_in_order_each_after_the_one_before_is_ready(ferryman: Servers) -> None:
    srv = ferryman("--workers", "3")
    lines = srv.lines
    assert [slot for slot, _ in ready_workers(srv)] == [1, 2, 3]
    for slot in (1, 2):
        ready = next(i for i, line in enumerate(lines) if f"worker {slot} ready" in line)
        later = next(i for i, line in enumerate(lines) if f"started worker {slot + 1}" in line)
        assert ready < later
    assert "3 worker(s)" in next(line for line in lines if "listening on" in line)
    assert sum("listening on" in line for line in lines) == 1


def test_workers_auto_starts_one_per_cpu(ferryman: Servers) -> None:
    srv = ferryman("--workers", "auto")
    assert len(ready_workers(srv)) == len(os.sched_getaffinity(0))


def test_sigterm_during_20_slow_downloads_lets_every_one_finish(ferryman: Servers) -> None:
    srv = ferryman("--workers", "2")
    downloads = [SlowDownload(srv, f"/p{BIG}.bin", rate=2_500_000).start() for _ in range(20)]
    assert all(d.started.wait(10) for d in downloads)  # every transfer is under way
    srv.signal(signal.SIGTERM)
    assert wait_until(lambda: "stopping: no longer accepting" in srv.log_text(), 5)
    with pytest.raises(OSError):
        socket.create_connection((srv.host, srv.port), timeout=2).close()
    for d in downloads:
        d.join(60)
    expected = pattern(BIG)
    for d in downloads:
        assert d.error is None and d.data is not None, d.error
        assert d.data.partition(b"\r\n\r\n")[2] == expected
    assert srv.wait(15) == 0, srv.log_text()
    assert "grace period over" not in srv.log_text()


# -- rolling restart --------------------------------------------------------------------


async def hammer(host: str, port: int, stop: asyncio.Event, expected: bytes,
                 keepalive: bool, tally: dict[str, int]) -> None:  # fmt: skip
    """Request /p1000.bin again and again; any answer that is not exactly right is a failure."""
    request = request_bytes("GET", "/p1000.bin", {} if keepalive else {"Connection": "close"})
    writer = None
    while not stop.is_set():
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: (\d+)", head)
            assert length, head
            body = await reader.readexactly(int(length.group(1)))
            if not head.startswith(b"HTTP/1.1 200 ") or body != expected:
                tally["wrong"] += 1
            tally["ok"] += 1
            if b"connection: close" in head.lower():
                writer.close()
                await writer.wait_closed()
                writer = None
        except (OSError, asyncio.IncompleteReadError) as exc:
            tally["failed"] += 1
            tally.setdefault(type(exc).__name__, 0)
            tally[type(exc).__name__] += 1
            if writer is not None:
                writer.close()
            writer = None
    if writer is not None:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def rolls_done(srv: ServerProcess) -> int:
    return srv.log_text().count("rolling restart done")


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_under_load_fails_no_request(ferryman: Servers, workers: int) -> None:
    srv = ferryman("--workers", str(workers))
    rolls = 1 if CI else 3
    before = {pid for _, pid in ready_workers(srv)}

    async def main() -> dict[str, int]:
        stop = asyncio.Event()
        tally = {"ok": 0, "failed": 0, "wrong": 0}
        clients = [
            asyncio.create_task(hammer(srv.host, srv.port, stop, pattern(1000), i % 2 == 0, tally))
            for i in range(16)
        ]
        await asyncio.sleep(0.3)  # load first, then restart under it
        for n in range(1, rolls + 1):
            srv.signal(signal.SIGHUP)

            def rolled(n: int = n) -> bool:
                return rolls_done(srv) >= n

            await asyncio.to_thread(wait_until, rolled, 15)  # the clients go on meanwhile
            await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*clients)
        return tally

    tally = asyncio.run(main())
    assert rolls_done(srv) == rolls, srv.log_text()
    assert tally["failed"] == 0 and tally["wrong"] == 0, tally
    assert tally["ok"] > 100, tally
    after = {pid for _, pid in ready_workers(srv)[-workers:]}
    assert not before & after  # every worker was replaced
    assert srv.stop() == 0


WRK_REPORT = """
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests,
      e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@pytest.mark.slow
@pytest.mark.parametrize("keepalive", [True, False], ids=["keep-alive", "close"])
def test_sighup_under_wrk_fails_no_request(
    ferryman: Servers, tmp_path: Path, keepalive: bool
) -> None:
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.skip("wrk is not installed")
    srv = ferryman("--workers", "2")
    script = tmp_path / "report.lua"
    script.write_text(WRK_REPORT)
    seconds = 3 if CI else 5
    cmd = [wrk, "-t1", "-c32", f"-d{seconds}s", "--timeout", "5s", "-s", str(script)]
    if not keepalive:
        cmd += ["-H", "Connection: close"]
    load = subprocess.Popen([*cmd, f"http://{srv.host}:{srv.port}/p1000.bin"],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        time.sleep(0.5)  # under load before the first restart
        srv.signal(signal.SIGHUP)
        assert wait_until(lambda: rolls_done(srv) == 1, 10), srv.log_text()
        srv.signal(signal.SIGHUP)
        assert wait_until(lambda: rolls_done(srv) == 2, 10), srv.log_text()
        out, _ = load.communicate(timeout=seconds + 20)
    finally:
        if load.poll() is None:
            load.kill()
            load.communicate()
    match = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    assert match, out
    requests, *errors = (int(g) for g in match.groups())
    assert requests > 1000
    assert errors == [0, 0, 0, 0, 0], f"connect/read/write/status/timeout errors: {errors}"


def test_a_rolling_restart_whose_workers_cannot_boot_keeps_the_old_ones(
    ferryman: Servers, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    srv = ferryman("--workers", "2", "--access-log", str(logs / "access.log"))
    shutil.rmtree(logs)  # new workers will not be able to open their log
    srv.signal(signal.SIGHUP)
    assert wait_until(lambda: "rolling restart abandoned" in srv.log_text(), 10), srv.log_text()
    assert "cannot open --access-log" in srv.log_text()
    assert srv.proc.poll() is None
    assert srv.get("/hello.txt").status == 200
    assert len(ready_workers(srv)) == 2  # still the first two
    assert srv.stop() == 0


def test_sigusr1_reopens_the_access_logs_without_a_restart(
    ferryman: Servers, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    srv = ferryman("--workers", "2", "--access-log", str(log))
    log.rename(tmp_path / "access.log.1")
    srv.signal(signal.SIGUSR1)
    assert wait_until(log.exists, 5)
    assert len(ready_workers(srv)) == 2 and "rolling" not in srv.log_text()
