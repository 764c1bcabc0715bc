"""The fleet on one machine: GET and PUT through one node, and through two behind nginx.

    make bench-fleet [QUICK=1]
    python bench/fleet_bench.py [--quick] [--rounds N] [--duration S]

Every topology serves one bucket (moto's S3 server) and records into one
PostgreSQL catalog (a throwaway durable cluster, tests/postgres.py); nginx
runs docs/fleet/nginx-ferryman.conf as written, with only its addresses
changed (tests/fleetconf.py). The topologies use the same number of worker
processes, so what changes is the path, not the capacity:

- `one node`: one ferryman with 2 workers, wrk straight at it;
- `one node, nginx`: the same node behind nginx;
- `two nodes, nginx`: two ferrymen with 1 worker each behind nginx.

Workloads (wrk, one thread on CPU 0): `get`, one 64 KiB object warm in every node's
block cache, 32 connections; `put`, 64 KiB to a new key per request, 8
connections (each PUT is a verified write to the bucket and a catalog
record). Nothing is pinned: on a 2-core machine every process shares both
cores, so each row shows where the CPU went (nodes, nginx, moto, PostgreSQL,
wrk, in % of one core); a row whose wrk used 90% of a core or more is
client-bound. Writes bench/results/fleet-latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from clientload import is_client_bound
from ferrymanproc import Started, start, stop
from proctree import CLOCK_TICKS, stat_cpu_ticks, stat_fields
from settings import RESULTS_DIR, Settings, settings_for
from wrkrun import WrkResult, run_wrk, script_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.*: the throwaway PostgreSQL, moto, the documented nginx

from tests.fleetconf import Balancer  # noqa: E402
from tests.postgres import PostgresServer  # noqa: E402
from tests.s3server import MotoServer, s3_env  # noqa: E402

TOKEN = "fleet-bench-token-0123456789"
OBJECT_SIZE = 64 * 1024
TOPOLOGIES = ("one node", "one node, nginx", "two nodes, nginx")


def tree_ticks(root: int) -> int:
    """CPU clock ticks of `root` and every process below it (with their reaped children)."""
    parents: dict[int, int] = {}
    stats: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            stats[int(entry)] = text
            parents[int(entry)] = int(stat_fields(text)[1])
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stat_cpu_ticks(stats[pid])
        todo.extend(child for child, parent in parents.items() if parent == pid)
    return total


def start_node(
    workdir: Path, name: str, workers: int, bucket: str, catalog: str, endpoint: str
) -> Started:
    (workdir / "tokens").write_text(f"{TOKEN} write\n")
    flags = [
        "--workers", str(workers), "--catalog", catalog, "--allow-write",
        "--tokens", str(workdir / "tokens"), "--state-dir", str(workdir / f"state-{name}"),
        "--cache-dir", str(workdir / f"cache-{name}"),
    ]  # fmt: skip
    return start(f"s3://{bucket}/files", flags, workdir / f"{name}.log", env=s3_env(endpoint))


def put_object(url: str, data: bytes) -> None:
    request = urllib.request.Request(
        url,
        data=data,
        method="PUT",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/octet-stream"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"PUT {url}: {exc.code} {exc.read()[:300]!r}") from None


def warm(url: str, expected: bytes, times: int = 3) -> None:
    """GET until the node answers from its cache (a few times), checking the bytes."""
    for _ in range(times):
        with urllib.request.urlopen(url, timeout=30) as answer:
            if answer.read() != expected:
                raise RuntimeError(f"{url}: not the bytes written")


@dataclass
class Row:
    topology: str
    workload: str
    rate: float
    problems: list[str]
    cpu: dict[str, float]  # % of one core, per part
    wrk_share: float

    def as_dict(self) -> dict[str, object]:
        return {
            "topology": self.topology,
            "workload": self.workload,
            "rate": round(self.rate, 1),
            "problems": self.problems,
            "cpu_pct_of_one_core": {k: round(v, 1) for k, v in self.cpu.items()},
            "wrk_share": round(self.wrk_share, 3),
            "client_bound": is_client_bound(self.wrk_share),
        }


def measure(
    settings: Settings,
    workdir: Path,
    url: str,
    workload: str,
    parts: dict[str, list[int]],
    round_no: int,
) -> tuple[WrkResult, dict[str, float]]:
    """One wrk run at `url`; the CPU each part (a list of root pids) used, % of one core."""
    before = {name: sum(tree_ticks(pid) for pid in pids) for name, pids in parts.items()}
    start = time.monotonic()
    if workload == "get":
        result = run_wrk(
            settings, f"{url}/object.bin", 32, settings.duration, script_file("plain", workdir)
        )
    else:
        result = run_wrk(
            settings,
            url,
            8,
            settings.duration,
            script_file("put", workdir),
            (f"/put/{round_no}-{time.time_ns()}", str(OBJECT_SIZE), TOKEN),
        )
    wall = time.monotonic() - start
    cpu = {
        name: 100 * (sum(tree_ticks(pid) for pid in pids) - before[name]) / CLOCK_TICKS / wall
        for name, pids in parts.items()
    }
    if result.client is not None:
        cpu["wrk"] = 100 * result.client.cpu_s / result.client.wall_s
    return result, cpu


def run_topology(
    settings: Settings,
    workdir: Path,
    topology: str,
    bucket: str,
    catalog: str,
    moto: MotoServer,
    postgres_pid: int,
    rounds: int,
) -> list[Row]:
    data = os.urandom(OBJECT_SIZE)
    two = topology.startswith("two")
    nodes = [
        start_node(workdir, f"{topology[:3]}-{i}", 1 if two else 2, bucket, catalog, moto.url)
        for i in range(2 if two else 1)
    ]
    balancer = (
        Balancer(workdir / f"nginx-{topology[:3]}", [n.address for n in nodes])
        if "nginx" in topology
        else None
    )
    try:
        put_object(f"{nodes[0].url}/object.bin", data)
        for node in nodes:
            warm(f"{node.url}/object.bin", data)
        url = balancer.url if balancer else nodes[0].url
        parts = {
            "nodes": [n.proc.pid for n in nodes],
            "moto": [moto.proc.pid],
            "postgresql": [postgres_pid],
        }
        if balancer:
            parts["nginx"] = [balancer.proc.pid]
        rows = []
        for workload in ("get", "put"):
            runs = [measure(settings, workdir, url, workload, parts, r) for r in range(rounds)]
            rates = [r.requests_per_s for r, _ in runs]
            median = statistics.median(rates)
            result, cpu = runs[rates.index(median)] if median in rates else runs[0]
            problems = result.problems()
            share = result.client.share if result.client else 0.0
            rows.append(Row(topology, workload, median, problems, cpu, share))
            print(
                f"  {topology:18} {workload:4} {median:9,.0f}/s  "
                + "  ".join(f"{k} {v:.0f}%" for k, v in cpu.items())
                + (f"  {problems}" if problems else "")
            )
        return rows
    finally:
        if balancer:
            balancer.stop()
        for node in nodes:
            stop(node)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s per measurement, 1 round")
    parser.add_argument("--rounds", type=int, help="rounds per measurement; the median counts")
    parser.add_argument("--duration", type=float, help="seconds per measurement")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    duration = args.duration or (3.0 if args.quick else 10.0)
    # The servers are not pinned (every process may use both cores); wrk runs one
    # thread on CPU 0 (put.lua numbers its keys per thread).
    settings = settings_for(args.quick, mode="fleet", duration=duration, warmup=0,
                            server_cpu="0-1", client_cpu="0")  # fmt: skip
    postgres = PostgresServer(durable=True)
    moto = MotoServer()
    rows: list[Row] = []
    try:
        catalog = postgres.url(postgres.new_schema())
        postgres_pid = int((postgres.data / "postmaster.pid").read_text().split()[0])
        with tempfile.TemporaryDirectory(prefix="ferryman-fleet-bench-") as tmp:
            for topology in TOPOLOGIES:
                bucket = moto.create_bucket()
                rows += run_topology(
                    settings, Path(tmp), topology, bucket, catalog, moto, postgres_pid, rounds
                )
    finally:
        moto.stop()
        postgres.close()
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / "fleet-latest.json"
    out.write_text(
        json.dumps(
            {
                "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                "cores": os.cpu_count(),
                "duration_s": duration,
                "rounds": rounds,
                "object_size": OBJECT_SIZE,
                "rows": [row.as_dict() for row in rows],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written: {out}")
    return 1 if any(row.problems for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
