"""Measure the two ways a worker pool can share a port (docs/decisions/0006).

    .venv/bin/python bench/pool_sockets.py [--duration 6] [--workers 2] [--connections 64]

*shared*: one listening socket, bound once, every worker accepts on a copy of
it (one accept queue). *reuseport*: each worker has its own socket bound
with SO_REUSEPORT (one queue per worker, the kernel hashes each new
connection to one of them).

Both run the real ferryman worker (ferryman.supervisor.child, through
process.spawn); only who binds what differs. For each strategy, under wrk
with keep-alive and with `Connection: close`, three scenarios:

- balance: the share of requests each worker answered (from per-worker access logs);
- rolling: replace each worker in turn (start the new one, wait until it is
  ready, SIGTERM the old one), as SIGHUP does; wrk's errors;
- crash: SIGKILL one worker and start a replacement at once; wrk's errors.
  With --workers 1 this is the gap while the only worker restarts.
- stall: SIGSTOP one worker for 2 s, then SIGCONT (a blocked event loop, as
  the heartbeat would see it); wrk's timeouts (--timeout 1s) and p99 latency.

Prints one line per run and a JSON summary at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ferryman.config import Config
from ferryman.supervisor.process import READY, Role, Worker, spawn

REPORT_LUA = """
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format('RESULT {"requests":%d,"connect":%d,"read":%d,"write":%d,' ..
      '"status":%d,"timeout":%d,"p99_ms":%.1f}\\n', summary.requests, e.connect, e.read,
      e.write, e.status, e.timeout, latency:percentile(99) / 1000))
end
"""


class Pool:
    """N workers on one port, by either strategy."""

    def __init__(self, strategy: str, workers: int, config: Config, logdir: Path) -> None:
        self.strategy = strategy
        self.config = config
        self.logdir = logdir
        self.spawned = 0
        self.retired: list[Worker] = []
        self.shared: socket.socket | None = None
        if strategy == "shared":
            self.shared = socket.create_server(("127.0.0.1", 0), backlog=1024)
            self.port = self.shared.getsockname()[1]
        else:
            # A bound, non-listening SO_REUSEPORT socket reserves the port and
            # receives no connections, as an arbiter would hold it.
            self.reservation = self._reuseport_socket(0, listen=False)
            self.port = self.reservation.getsockname()[1]
        self.workers: list[Worker] = [self.start(slot) for slot in range(1, workers + 1)]

    @staticmethod
    def _reuseport_socket(port: int, listen: bool = True) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        if listen:
            sock.listen(1024)
        return sock

    def start(self, slot: int) -> Worker:
        self.spawned += 1
        log = self.logdir / f"{self.strategy}-{self.spawned}.log"
        config = replace(self.config, access_log=str(log))
        if self.shared is not None:
            worker = spawn(
                config, self.shared.fileno(), slot, Role.WORKER, self.spawned, time.monotonic()
            )
        else:
            own = self._reuseport_socket(self.port)
            try:
                worker = spawn(
                    config, own.fileno(), slot, Role.WORKER, self.spawned, time.monotonic()
                )
            finally:
                own.close()  # the worker holds the only copy, as if it had bound it itself
        deadline = time.monotonic() + 10
        while worker.state != READY:
            if time.monotonic() > deadline or worker.reap() is not None:
                raise RuntimeError(f"worker {slot} did not start")
            for kind, text in worker.channel.read():
                worker.on_message(kind, text, time.monotonic())
            time.sleep(0.005)
        return worker

    def replace(self, index: int, kill: bool) -> None:
        old = self.workers[index]
        if kill:
            old.send(signal.SIGKILL)
            self.workers[index] = self.start(old.slot)
        else:
            self.workers[index] = self.start(old.slot)  # new one accepts first
            old.stop(time.monotonic())
        self.retired.append(old)

    def close(self) -> dict[str, int]:
        for worker in self.workers + self.retired:
            worker.send(signal.SIGTERM)
        for worker in self.workers + self.retired:
            worker.proc.wait(30)
            worker.close()
        if self.shared is not None:
            self.shared.close()
        else:
            self.reservation.close()
        return {
            path.name: sum(1 for _ in path.open())
            for path in sorted(self.logdir.glob(f"{self.strategy}-*.log"))
        }


def run_wrk(url: str, args: argparse.Namespace, close: bool, during: Callable[[], None]) -> dict:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(REPORT_LUA)
    cmd = ["wrk", "-t1", f"-c{args.connections}", f"-d{int(args.duration)}s", "--timeout", "1s",
           "-s", str(script)]  # fmt: skip
    if close:
        cmd += ["-H", "Connection: close"]
    proc = subprocess.Popen([*cmd, url], stdout=subprocess.PIPE, text=True)
    try:
        during()
        out, _ = proc.communicate(timeout=args.duration + 30)
    finally:
        script.unlink()
    match = re.search(r"RESULT (\{.*\})", out)
    if not match:
        raise RuntimeError(out)
    return json.loads(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--strategies", default="shared,reuseport")
    parser.add_argument("--scenarios", default="balance,rolling,crash")
    parser.add_argument("--loads", default="keep-alive,close")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="pool-sockets-"))
    root = work / "root"
    root.mkdir()
    (root / "1k.bin").write_bytes(os.urandom(1024))
    config = Config(source=str(root), grace_period=5.0, workers=args.workers)
    results = []
    for strategy in args.strategies.split(","):
        for close in [load == "close" for load in args.loads.split(",")]:
            for scenario in args.scenarios.split(",") * args.repeat:
                logdir = Path(tempfile.mkdtemp(dir=work))
                pool = Pool(strategy, args.workers, config, logdir)

                def during(pool: Pool = pool, scenario: str = scenario) -> None:
                    if scenario == "balance":
                        return
                    if scenario == "stall":
                        time.sleep(args.duration / 3)
                        pool.workers[0].send(signal.SIGSTOP)
                        time.sleep(2)
                        pool.workers[0].send(signal.SIGCONT)
                        return
                    step = args.duration / (len(pool.workers) + 2)
                    for index in range(len(pool.workers)):
                        time.sleep(step)
                        pool.replace(index, kill=scenario == "crash")
                        if scenario == "crash":
                            break  # one crash per run

                url = f"http://127.0.0.1:{pool.port}/1k.bin"
                wrk = run_wrk(url, args, close, during)
                counts = pool.close()
                errors = sum(wrk[k] for k in ("connect", "read", "write", "status", "timeout"))
                shares = sorted(counts.values(), reverse=True)
                total = sum(shares) or 1
                row = {
                    "strategy": strategy, "keepalive": not close, "scenario": scenario,
                    "workers": args.workers, "requests": wrk["requests"], "errors": errors,
                    "wrk_errors": {k: wrk[k] for k in ("connect", "read", "write", "status",
                                                       "timeout")},
                    "per_worker": counts,
                    "largest_share": round(shares[0] / total, 3) if shares else None,
                    "p99_ms": wrk["p99_ms"],
                }  # fmt: skip
                results.append(row)
                print(
                    f"{strategy:9} {'keep-alive' if not close else 'close':10} {scenario:8}"
                    f" requests {wrk['requests']:7d}  errors {errors:5d} {row['wrk_errors']}"
                    f"  p99 {wrk['p99_ms']:.1f} ms  shares {[round(c / total, 2) for c in shares]}",
                    flush=True,
                )
    shutil.rmtree(work)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
