"""One timed load: a warm-up, then the measured run, with the server's CPU around it
and the load generator's own CPU from the run; the Outcome it gives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from abrun import AbResult
from clientload import CLIENT_BOUND
from outcome import CPU_PER_ANSWER, Context, Outcome
from proctree import cpu_seconds
from servers import Server
from wrkrun import WrkResult, run_wrk, script_file

Load = WrkResult | AbResult


@dataclass
class Measured:
    load: Load
    server_cpu_s: float

    @property
    def server_cpu_pct(self) -> float:
        """Share of its one CPU the server used: near 100 means it was the bottleneck."""
        return 100 * self.server_cpu_s / self.load.duration_s

    @property
    def cpu_us_per_answer(self) -> float:
        """The server's CPU microseconds per answer of the timed run (NaN: no answers)."""
        requests = self.load.requests
        return 1e6 * self.server_cpu_s / requests if requests else float("nan")

    @property
    def client_cpu_pct(self) -> float:
        """Share of its cores the load generator used: 90 or more means it was the limit."""
        client = self.load.client
        return 100 * client.share if client else float("nan")

    @property
    def client_bound(self) -> bool:
        return self.load.client is not None and self.load.client.bound

    def client_note(self) -> str:
        client = self.load.client
        return f"{CLIENT_BOUND}: {client.describe(self.load.tool)}" if client else ""


def measure(ctx: Context, server: Server, run: Callable[[float], Load]) -> Measured:
    """`run(seconds)` once to warm up (unless the warm-up is 0), then once measured."""
    if ctx.settings.warmup > 0:
        run(ctx.settings.warmup)
    cpu_before = cpu_seconds(server.sid)
    result = run(ctx.settings.duration)
    return Measured(result, cpu_seconds(server.sid) - cpu_before)


def measure_wrk(
    ctx: Context,
    server: Server,
    connections: int,
    script: str,
    args: tuple[str, ...] = (),
    path: str | None = None,
    headers: tuple[str, ...] = (),
) -> Measured:
    """wrk with `script` (bench/wrk/) on `path` (default: the 100 MiB file)."""
    lua = script_file(script, ctx.workdir)
    url = server.url(path or ctx.files.big_path)
    return measure(
        ctx, server, lambda s: run_wrk(ctx.settings, url, connections, s, lua, args, headers)
    )


def measured_outcome(
    measured: Measured,
    metrics: dict[str, float],
    capped: tuple[str, ...],
    problems: list[str],
) -> Outcome:
    """The figures with both CPU shares, and the server's CPU per answer beside a rate of
    answers; `capped`: the metric keys a saturated load generator limits (rates,
    latencies; not costs per byte or per answer), client-bound if it was."""
    status = "flagged" if problems else "ok"
    notes = list(problems)
    bound: list[str] = []
    if measured.client_bound:
        bound = [key for key in capped if key in metrics]
        notes.append(measured.client_note())
    if "rps" in metrics:
        metrics = {**metrics, CPU_PER_ANSWER.key: measured.cpu_us_per_answer}
    metrics = {
        **metrics,
        "server_cpu_pct": measured.server_cpu_pct,
        "client_cpu_pct": measured.client_cpu_pct,
    }
    details = {measured.load.tool: measured.load.as_dict()}
    return Outcome(status, metrics, "; ".join(notes), details, bound)
