"""The workloads that move bytes of the 100 MiB file: whole, one range, several ranges."""

from __future__ import annotations

from measure import measure_wrk, measured_outcome
from outcome import ANSWERS, Context, Metric, Outcome, Workload
from probes import Probe, probe_multi_range, probe_single_range, probe_whole
from servers import Server


def _probe_problems(probe: Probe) -> list[str]:
    return [] if probe.correct else [f"probe: {probe.note}"]


def run_big(server: Server, ctx: Context) -> Outcome:
    probe = probe_whole(server.port, ctx.files, ctx.files.big_path, server.tls)
    m = measure_wrk(ctx, server, ctx.settings.big_connections, "plain")
    gigabytes = m.load.bytes / 1e9
    metrics = {
        "gbps": gigabytes / m.load.duration_s,
        "cpu_s_per_gb": m.server_cpu_s / gigabytes if gigabytes else float("nan"),
        "cpu_s": m.server_cpu_s,
    }
    problems = _probe_problems(probe) + m.load.problems()
    return measured_outcome(m, metrics, ("gbps",), problems)


def run_ranges(server: Server, ctx: Context) -> Outcome:
    s = ctx.settings
    probe = probe_single_range(server.port, ctx.files, s.range_size, server.tls)
    if not probe.supported:
        return Outcome("unsupported", note=probe.note)
    args = (ctx.files.big_path, str(ctx.files.big_size), str(s.range_size))
    m = measure_wrk(ctx, server, s.range_connections, "range", args)
    problems = _probe_problems(probe) + m.load.problems()
    return measured_outcome(m, {"rps": m.load.requests_per_s}, ("rps",), problems)


def run_multirange(server: Server, ctx: Context) -> Outcome:
    s = ctx.settings
    probe = probe_multi_range(
        server.port, ctx.files, s.multirange_parts, s.multirange_part_size, server.tls
    )
    if not probe.supported:
        return Outcome("unsupported", note=probe.note)
    args = (
        ctx.files.big_path,
        str(ctx.files.big_size),
        str(s.multirange_part_size),
        str(s.multirange_parts),
    )
    m = measure_wrk(ctx, server, s.multirange_connections, "multirange", args)
    problems = _probe_problems(probe) + m.load.problems()
    return measured_outcome(m, {"rps": m.load.requests_per_s}, ("rps",), problems)


WORKLOADS = [
    Workload(
        "big",
        "100 MiB file, 4 connections",
        (
            Metric("gbps", "GB/s", "GB/s", "higher", 2),
            Metric("cpu_s_per_gb", "CPU s/GB", "s/GB", "lower", 3),
        ),
        run_big,
    ),
    Workload("ranges", "random 64 KiB ranges in 100 MiB, 64 connections", ANSWERS, run_ranges),
    Workload("multirange", "3 ranges of 16 KiB each, 64 connections", ANSWERS, run_multirange),
]
