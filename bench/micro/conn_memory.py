"""Where a worker's memory goes per idle connection and per slow transfer.

Runs the real worker (ferryman.server.worker, uvloop when installed) in this
process with tracemalloc on, and drives it with the benchmark's own client
(bench/clients.py, a separate process) in `idle` or `slow` mode. While the
client holds its connections it compares the worker's RSS and a tracemalloc
snapshot with the ones taken before connecting, and prints:

- RSS growth per connection (per connection still held or streaming at the
  end, and how many that was when fewer than asked), split into what Python's allocator traced and
  the rest (C allocations of uvloop/libuv, httptools/llhttp, the C library);
- the allocation sites (file:line) that grew most, per connection.

    .venv/bin/python bench/micro/conn_memory.py idle -n 2000
    .venv/bin/python bench/micro/conn_memory.py slow -n 200 --frames 4

tracemalloc itself costs memory and time, so the RSS figures here are higher
than in the suite; compare the split and the sites, not the totals.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from ferryman.config import Config
from ferryman.server import worker

BENCH_DIR = Path(__file__).resolve().parent.parent
BIG = 100 * 1024 * 1024


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Probe:
    """worker.Supervision that runs the measurement once the worker is ready."""

    def __init__(self, measure: Callable[[], None]) -> None:
        self.measure = measure

    def ready(self, loop: object, stop: Callable[[], None], name: str) -> None:
        def run() -> None:
            try:
                self.measure()
            finally:
                loop.call_soon_threadsafe(stop)  # type: ignore[attr-defined]

        threading.Thread(target=run, daemon=True).start()

    def closed(self) -> None:
        pass


def client(mode: str, port: int, path: str, count: int) -> subprocess.Popen[str]:
    argv = [sys.executable, str(BENCH_DIR / "clients.py"), mode, "--port", str(port),
            "--path", path, "--count", str(count)]  # fmt: skip
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def event(proc: subprocess.Popen[str]) -> dict[str, object]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("the client exited early")
    result: dict[str, object] = json.loads(line)
    return result


def send(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def connections_kept(mode: str, final: dict[str, object]) -> int:
    """Connections still held (idle) or streaming with a 200 (slow) at the end."""
    kept = final["held"] if mode == "idle" else final["ok"]
    assert isinstance(kept, int)
    return kept


def report(args: argparse.Namespace, kept: int, before: dict, after: dict, diff: list) -> None:
    """Growth per connection actually kept (held, or streaming), not per one asked for."""
    if kept == 0:
        print(f"{args.mode}: none of {args.count} connections was kept; nothing to divide")
        return
    n = kept
    rss = (after["rss"] - before["rss"]) / n
    anon = (after["anon"] - before["anon"]) / n
    traced = (after["traced"] - before["traced"]) / 1024 / n
    print(f"{args.mode}: {kept} connections")
    if kept < args.count:
        print(f"  only {kept} of {args.count} were kept: the figures are per kept connection")
    print(f"  VmRSS   +{rss:7.2f} KiB per connection")
    print(f"  RssAnon +{anon:7.2f} KiB per connection")
    if not tracemalloc.is_tracing():
        return
    print(f"  traced  +{traced:7.2f} KiB per connection (Python objects, via tracemalloc)")
    print(f"  other   +{anon - traced:7.2f} KiB per connection (C allocations, malloc overhead)")
    print(f"  top {args.top} sites by growth, bytes per connection:")
    for stat in diff[: args.top]:
        frames = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in stat.traceback)
        print(f"    {stat.size_diff / n:8.1f}  {stat.count_diff / n:5.2f} blocks  {frames}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["idle", "slow"])
    parser.add_argument("-n", "--count", type=int, default=2000)
    parser.add_argument(
        "--frames",
        type=int,
        default=1,
        help="traceback depth per site; 0: RSS only, no tracemalloc",
    )
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--hold", type=float, default=2.0, help="seconds to hold before measuring")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="conn-memory-"))
    (tmp / "1k.bin").write_bytes(os.urandom(1024))
    with open(tmp / "big.bin", "wb") as big:
        big.truncate(BIG)  # sparse: the page cache serves zeros, memory is what is measured
    path = "/1k.bin" if args.mode == "idle" else "/big.bin"
    sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
    port = sock.getsockname()[1]
    config = Config(source=str(tmp), access_log="off")
    if args.frames:
        tracemalloc.start(args.frames)

    def measure() -> None:
        time.sleep(0.2)
        before = {"rss": status_kib("VmRSS"), "anon": status_kib("RssAnon"),
                  "traced": tracemalloc.get_traced_memory()[0]}  # fmt: skip
        first = tracemalloc.take_snapshot() if args.frames else None
        proc = client(args.mode, port, path, args.count)
        try:
            opened = event(proc)
            if args.mode == "slow":
                send(proc, "start")
            time.sleep(args.hold)
            after = {"rss": status_kib("VmRSS"), "anon": status_kib("RssAnon"),
                     "traced": tracemalloc.get_traced_memory()[0]}  # fmt: skip
            second = tracemalloc.take_snapshot() if args.frames else None
            send(proc, "stop" if args.mode == "slow" else "report")
            final = event(proc)
        finally:
            proc.kill()
            proc.wait()
        print(json.dumps(opened))
        diff = second.compare_to(first, "traceback") if first and second else []
        report(args, connections_kept(args.mode, final), before, after, diff)

    worker.run(config, sock, Probe(measure))


if __name__ == "__main__":
    main()
