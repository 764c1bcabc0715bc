"""Run ab (ApacheBench) pinned to the client CPUs: the load generator of HEAD.

wrk cannot time HEAD: its parser waits for the Content-Length bytes a HEAD
answer never carries (0 requests). ab knows HEAD (`-i`); it speaks HTTP/1.0
with `Connection: Keep-Alive` (`-k`) and runs on one core whatever the
pinning. Its CPU use is measured like wrk's (bench/clientload.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from clientload import ClientCpu, run_pinned
from settings import Settings

TOOL = "ab"
FIELDS = {
    "duration_s": r"Time taken for tests:\s+([\d.]+) seconds",
    "requests": r"Complete requests:\s+(\d+)",
    "failed": r"Failed requests:\s+(\d+)",
    "keep_alive": r"Keep-Alive requests:\s+(\d+)",
    "bytes": r"Total transferred:\s+(\d+) bytes",
    "body_bytes": r"HTML transferred:\s+(\d+) bytes",
}
OPTIONAL = {"non_2xx": r"Non-2xx responses:\s+(\d+)", "p99_ms": r"^\s*99%\s+(\d+)"}
# ab keeps 32 bytes per request it may send (-n); -t alone would stop it at 50,000.
# So -n is what this rate would send in the time: more than one core's worth.
MAX_RATE = 250_000
# Below this share of answers on kept-alive connections, ab measured new
# connections, not answers (nginx closes one every 1,000 requests).
KEEP_ALIVE_SHARE = 0.9


class AbError(Exception):
    """ab did not run or its summary could not be read."""


@dataclass
class AbResult:
    requests: int
    failed: int
    keep_alive: int
    bytes: int
    body_bytes: int
    duration_s: float
    non_2xx: int = 0
    p99_ms: float = float("nan")
    client: ClientCpu | None = None

    tool = TOOL

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s

    def problems(self, error_statuses: bool = False) -> list[str]:
        found = []
        if self.requests == 0:
            found.append("no complete response")
        if error_statuses and self.non_2xx != self.requests:
            found.append(f"{self.requests - self.non_2xx} answers not 4xx/5xx")
        elif not error_statuses and self.non_2xx:
            found.append(f"{self.non_2xx} non-2xx")
        if self.failed:
            found.append(f"{self.failed} failed (connect, read, or a length unlike the first)")
        if self.requests and self.keep_alive < KEEP_ALIVE_SHARE * self.requests:
            found.append(f"only {self.keep_alive} of {self.requests} answers kept the connection")
        return found

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "failed": self.failed,
            "keep_alive": self.keep_alive,
            "bytes": self.bytes,
            "body_bytes": self.body_bytes,
            "non_2xx": self.non_2xx,
            "duration_s": round(self.duration_s, 3),
            "p99_ms": self.p99_ms,
            "client": self.client.as_dict() if self.client else None,
        }


def parse_output(text: str) -> AbResult:
    """ab's summary; AbError when a field it always prints is missing."""
    values: dict[str, float] = {}
    for name, pattern in FIELDS.items():
        match = re.search(pattern, text, re.MULTILINE)
        if match is None:
            raise AbError(f"no {name} in ab output: {text.strip()[-300:]}")
        values[name] = float(match.group(1))
    for name, pattern in OPTIONAL.items():
        match = re.search(pattern, text, re.MULTILINE)
        if match is not None:
            values[name] = float(match.group(1))
    ints = {k: int(v) for k, v in values.items() if k not in ("duration_s", "p99_ms")}
    return AbResult(
        **ints, duration_s=values["duration_s"], p99_ms=values.get("p99_ms", float("nan"))
    )


def run_ab(
    settings: Settings, url: str, connections: int, duration: float, head: bool = True
) -> AbResult:
    """ab for `duration` seconds (its -t; -n only so high that the time ends it)."""
    seconds = max(1, round(duration))
    requests = str(MAX_RATE * seconds)
    argv = ["ab", "-q", "-k", "-c", str(connections), "-t", str(seconds), "-n", requests]
    argv += ["-i", url] if head else [url]
    done = run_pinned(argv, settings.client_cpu, seconds + 60, threads=1)
    if done.returncode != 0:
        raise AbError(f"ab exited with {done.returncode}: {done.output.strip()[-300:]}")
    result = parse_output(done.output)
    result.client = done.client
    return result
