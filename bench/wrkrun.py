"""Run wrk (pinned to the client CPU) with one of the Lua scripts in bench/wrk/."""

from __future__ import annotations

import json
import resource
import subprocess
from dataclasses import dataclass
from pathlib import Path

from proctree import kill_tree
from settings import BENCH_DIR, Settings

LUA_DIR = BENCH_DIR / "wrk"
RESULT_PREFIX = "WRK_RESULT "


class WrkError(Exception):
    """wrk did not run or printed no result line."""


@dataclass
class WrkResult:
    requests: int
    bytes: int
    duration_s: float
    errors: dict[str, int]
    latency_us: dict[str, int]
    counters: dict[str, int]
    cpu_s: float = 0.0  # wrk's own CPU seconds (user + system) over the whole run

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "bytes": self.bytes,
            "duration_s": round(self.duration_s, 3),
            "errors": self.errors,
            "latency_us": self.latency_us,
            "counters": self.counters,
            "cpu_s": round(self.cpu_s, 3),
        }


def script_file(name: str, workdir: Path) -> Path:
    """The workload script with report.lua appended, written into `workdir`."""
    path = workdir / f"{name}.lua"
    body = (LUA_DIR / f"{name}.lua").read_text() + "\n" + (LUA_DIR / "report.lua").read_text()
    path.write_text(body)
    return path


def parse_output(stdout: str) -> WrkResult:
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            data = json.loads(line[len(RESULT_PREFIX) :])
            return WrkResult(
                requests=data["requests"],
                bytes=data["bytes"],
                duration_s=data["duration_us"] / 1e6,
                errors=data["errors"],
                latency_us=data["latency_us"],
                counters=data["counters"],
            )
    raise WrkError(f"no result line in wrk output: {stdout.strip()[-300:]}")


def run_wrk(
    settings: Settings,
    url: str,
    connections: int,
    duration: float,
    script: Path,
    args: tuple[str, ...] = (),
) -> WrkResult:
    argv = [
        "taskset", "-c", settings.client_cpu,
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s",
        "--timeout", "10s", "-s", str(script), url, "--", *args,
    ]  # fmt: skip
    before = _children_cpu()  # taskset execs wrk: one child, reaped in communicate()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, _ = proc.communicate(timeout=duration + 60)
    except subprocess.TimeoutExpired as exc:
        raise WrkError("wrk did not finish in time") from exc
    finally:
        kill_tree(proc)
    if proc.returncode != 0:
        raise WrkError(f"wrk exited with {proc.returncode}: {stdout.strip()[-300:]}")
    result = parse_output(stdout)
    result.cpu_s = _children_cpu() - before
    return result


def _children_cpu() -> float:
    """CPU seconds of every reaped child so far (the servers are reaped only at their stop)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
