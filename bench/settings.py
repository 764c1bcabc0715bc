"""Run settings: the sizes, counts and durations of one benchmark run."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from clientload import format_cpu_list

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
DOCS_CHART = REPO_DIR / "docs" / "performance-latest.png"
FERRYMAN = REPO_DIR / ".venv" / "bin" / "ferryman"

HOST = "127.0.0.1"
REFERENCE = "nginx"  # every ratio divides by its figure
LIMIT = "probe"  # what a Python server can do at most (bench/peers/probe_peer.py)


@dataclass(frozen=True)
class Settings:
    mode: str
    duration: float  # seconds measured per workload and server
    warmup: float  # seconds of unmeasured load before each wrk measurement
    idle_connections: int
    slow_readers: int
    server_cpu: str = "1"  # taskset CPU list for every server
    client_cpu: str = "0"  # taskset CPU list for wrk and the client scripts (client_cpus())
    small_connections: int = 64
    big_connections: int = 4
    range_connections: int = 64
    range_size: int = 64 * 1024
    multirange_connections: int = 64
    multirange_parts: int = 3
    multirange_part_size: int = 16 * 1024
    slow_rate: int = 64 * 1024  # bytes per second each slow reader accepts
    slow_rcvbuf: int = 16 * 1024  # SO_RCVBUF of each slow reader (Linux doubles it)
    client_sources: int = 8  # loopback source addresses the clients spread over (127.0.0.1-8)
    ferryman: str = str(FERRYMAN)  # the ferryman executable to run
    ferryman_args: tuple[str, ...] = ()  # extra arguments, e.g. ("--sendfile", "off")
    rounds: int = 1  # rate workloads run this often, servers alternating; the median is kept
    startup_timeout: float = 30.0
    open_timeout: float = 180.0  # time allowed to open all idle connections / slow readers

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def client_cpus(server_cpu: str = "1") -> str:
    """Every CPU this process may use but the server's: the load generators' share.
    On a 2-core machine that is one core, and that is the limit of what it can measure."""
    server = {int(c) for c in server_cpu.split(",") if c.isdigit()}
    others = set(os.sched_getaffinity(0)) - server
    return format_cpu_list(others) if others else "0"


def settings_for(quick: bool, **overrides: object) -> Settings:
    """The mode's settings, with any field replaced by a non-None override."""
    if quick:
        base = Settings(
            mode="quick",
            duration=3.0,
            warmup=1.0,
            idle_connections=1000,
            slow_readers=100,
            client_cpu=client_cpus(),
        )
    else:
        base = Settings(
            mode="full",
            duration=15.0,
            warmup=3.0,
            idle_connections=10000,
            slow_readers=1000,
            client_cpu=client_cpus(),
        )
    changes = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**{**base.as_dict(), **changes})
