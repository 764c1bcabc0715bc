"""Run wrk pinned to the client CPUs with one of the Lua scripts in bench/wrk/.

wrk gets one thread per client CPU (on a 2-core machine: one, on the core the
server does not use) and its CPU use is measured (bench/clientload.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from clientload import ClientCpu, cpu_list_size, run_pinned
from settings import BENCH_DIR, Settings

LUA_DIR = BENCH_DIR / "wrk"
RESULT_PREFIX = "WRK_RESULT "
TOOL = "wrk"


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
    client: ClientCpu | None = None  # wrk's own CPU over its run

    tool = TOOL

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s

    def problems(self, error_statuses: bool = False) -> list[str]:
        """What went wrong in the run; `error_statuses`: every answer is meant to be
        4xx/5xx (wrk counts those as status errors)."""
        found = []
        if self.requests == 0:
            found.append("no complete response")
        for name, count in self.errors.items():
            if name == "status":
                if error_statuses and count != self.requests:
                    found.append(f"{self.requests - count} answers not 4xx/5xx")
                elif not error_statuses and count:
                    found.append(f"{count} non-2xx")
            elif count:
                found.append(f"{count} {name} errors")
        for name, count in self.counters.items():
            if count:
                found.append(f"{count} {name.replace('_', ' ')}")
        return found

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "bytes": self.bytes,
            "duration_s": round(self.duration_s, 3),
            "errors": self.errors,
            "latency_us": self.latency_us,
            "counters": self.counters,
            "client": self.client.as_dict() if self.client else None,
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


def wrk_threads(settings: Settings) -> int:
    """One wrk thread per client CPU: more threads on the same cores add no capacity."""
    return cpu_list_size(settings.client_cpu)


def run_wrk(
    settings: Settings,
    url: str,
    connections: int,
    duration: float,
    script: Path,
    args: tuple[str, ...] = (),
    headers: tuple[str, ...] = (),
) -> WrkResult:
    """`headers`: "Name: value" lines every request carries (wrk -H)."""
    threads = wrk_threads(settings)
    argv = [
        "wrk", f"-t{threads}", f"-c{max(connections, threads)}", f"-d{max(1, round(duration))}s",
        "--timeout", "10s", *_header_flags(headers), "-s", str(script), url, "--", *args,
    ]  # fmt: skip
    done = run_pinned(argv, settings.client_cpu, duration + 60)
    if done.returncode != 0:
        raise WrkError(f"wrk exited with {done.returncode}: {done.output.strip()[-300:]}")
    result = parse_output(done.output)
    result.client = done.client
    return result


def _header_flags(headers: tuple[str, ...]) -> list[str]:
    return [flag for header in headers for flag in ("-H", header)]
