"""PUT throughput against the disk's own write speed: 1 MiB files, and one 1 GiB file.

    make bench-put [QUICK=1]
    python bench/put_bench.py [--quick] [--rounds N] [--big-mib N]

The disk first: `dd if=/dev/zero bs=1M oflag=direct` of the big size into
the directory ferryman will write to (O_DIRECT: the disk, not the page
cache). Then ferryman (`serve DIR --allow-write`, compiled, one worker,
pinned to CPU 1) takes:

- `put-1m`: PUTs of 1 MiB to a new key each (wrk, bench/wrk/put.lua, 8
  connections, one thread on CPU 0) for --duration seconds: MB/s of bodies
  answered 201;
- `put-1g`: one PUT of the big file from a client on CPU 0 that streams it
  in 1 MiB writes: MB/s from the first byte sent to the 201.

ferryman verifies every write before it answers (the body's SHA-256 as it
arrives, fsync, and with `--verify-writes full`, the default, the file read
back and hashed), so each figure is a verified write. The ratio is ferryman's
MB/s over dd's. Every figure comes with the CPU of ferryman's worker and of
the client. Writes bench/results/put-latest.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from clientload import run_pinned
from ferrymanproc import Started, start, stop
from proctree import cpu_seconds
from settings import RESULTS_DIR, settings_for
from wrkrun import run_wrk, script_file

TOKEN = "put-bench-token-0123456789"
MIB = 1024 * 1024


def dd_mb_per_s(directory: Path, mib: int) -> float:
    """The disk's own sequential write speed, page cache bypassed (dd oflag=direct)."""
    target = directory / "dd.bin"
    done = run_pinned(
        [
            "env",
            "LC_ALL=C",  # dd's summary line in English, whatever the locale
            "dd",
            "if=/dev/zero",
            f"of={target}",
            "bs=1M",
            f"count={mib}",
            "oflag=direct",
            "conv=fsync",
        ],
        "0",
        600,
    )
    target.unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"dd failed: {done.output.strip()[-300:]}")
    return mib * MIB / dd_seconds(done.output) / 1e6


def dd_seconds(output: str) -> float:
    """The seconds of dd's summary line: "... copied, 0.167 s, 1.6 GB/s"."""
    found = re.findall(r"copied, ([0-9.]+) s,", output)
    if not found:
        raise RuntimeError(f"no summary in dd's output: {output.strip()[-300:]}")
    return float(found[-1])


def start_ferryman(root: Path, state: Path) -> Started:
    (state.parent / "tokens").write_text(f"{TOKEN} write\n")
    flags = ["--allow-write", "--tokens", str(state.parent / "tokens"), "--state-dir", str(state)]
    return start(str(root), flags, state.parent / "ferryman.log", cpus="1")


def put_big(port: int, path: Path) -> tuple[float, float]:
    """One PUT of the file at `path`, streamed in 1 MiB writes: (MB/s, client CPU s)."""
    size = path.stat().st_size
    before = os.times()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600, blocksize=MIB)
    start = time.perf_counter()
    with open(path, "rb") as body:
        conn.request(
            "PUT",
            f"/big-{time.time_ns()}.bin",
            body=body,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Length": str(size)},
        )
        answer = conn.getresponse()
        answer.read()
    seconds = time.perf_counter() - start
    conn.close()
    after = os.times()
    if answer.status != 201:
        raise RuntimeError(f"PUT of the big file answered {answer.status}")
    return size / seconds / 1e6, (after.user - before.user) + (after.system - before.system)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="256 MiB big file, 1 round, 3 s")
    parser.add_argument("--rounds", type=int, help="rounds per figure; the median counts")
    parser.add_argument("--big-mib", type=int, help="size of the big file in MiB (1024)")
    parser.add_argument("--duration", type=float, help="seconds of 1 MiB PUTs per round")
    parser.add_argument("--dir", help="where to write (a disk, not tmpfs; default: the temp dir)")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    big_mib = args.big_mib or (256 if args.quick else 1024)
    duration = args.duration or (3.0 if args.quick else 10.0)
    settings = settings_for(args.quick, mode="put", duration=duration, warmup=0,
                            server_cpu="1", client_cpu="0")  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="ferryman-put-bench-", dir=args.dir))
    try:
        root, state = work / "root", work / "state"
        root.mkdir()
        big = work / "big.bin"
        with open(big, "wb") as out:
            block = os.urandom(MIB)
            for _ in range(big_mib):
                out.write(block)
        disk = statistics.median(dd_mb_per_s(root, big_mib) for _ in range(rounds))
        print(f"disk (dd oflag=direct, {big_mib} MiB): {disk:,.0f} MB/s")
        server = start_ferryman(root, state)
        proc, port = server.proc, server.port
        try:
            small, small_cpu, client_share = [], [], []
            for r in range(rounds):
                before = cpu_seconds(proc.pid)
                result = run_wrk(
                    settings,
                    f"http://127.0.0.1:{port}",
                    8,
                    duration,
                    script_file("put", work),
                    (f"/small-{r}", str(MIB), TOKEN),
                )
                if result.problems():
                    raise RuntimeError(f"1 MiB PUTs: {', '.join(result.problems())}")
                small.append(result.requests_per_s * MIB / 1e6)
                small_cpu.append(100 * (cpu_seconds(proc.pid) - before) / result.duration_s)
                client_share.append(100 * result.client.share if result.client else 0.0)
                shutil.rmtree(root / f"small-{r}", ignore_errors=True)
            bigs = []
            for _ in range(rounds):
                before = cpu_seconds(proc.pid)
                rate, client = put_big(port, big)
                bigs.append((rate, cpu_seconds(proc.pid) - before, client))
                for leftover in root.glob("big-*.bin"):
                    leftover.unlink()
        finally:
            stop(server)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    one_mib = statistics.median(small)
    big_rate, big_server_cpu, big_client_cpu = sorted(bigs)[len(bigs) // 2]
    print(
        f"put-1m: {one_mib:,.0f} MB/s ({one_mib / disk:.2f} of the disk); ferryman CPU "
        f"{statistics.median(small_cpu):.0f}%, wrk {statistics.median(client_share):.0f}%"
    )
    print(
        f"put-1g: {big_rate:,.0f} MB/s ({big_rate / disk:.2f} of the disk); ferryman CPU "
        f"{big_server_cpu:.1f} s, client {big_client_cpu:.1f} s for {big_mib} MiB"
    )
    RESULTS_DIR.mkdir(exist_ok=True)
    out_path = RESULTS_DIR / "put-latest.json"
    out_path.write_text(
        json.dumps(
            {
                "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                "rounds": rounds,
                "big_mib": big_mib,
                "duration_s": duration,
                "disk_mb_s": round(disk, 1),
                "put_1m": {
                    "mb_s": round(one_mib, 1),
                    "of_disk": round(one_mib / disk, 3),
                    "server_cpu_pct": round(statistics.median(small_cpu), 1),
                    "client_cpu_pct": round(statistics.median(client_share), 1),
                },
                "put_1g": {
                    "mb_s": round(big_rate, 1),
                    "of_disk": round(big_rate / disk, 3),
                    "server_cpu_s": round(big_server_cpu, 2),
                    "client_cpu_s": round(big_client_cpu, 2),
                },
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written: {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
