"""The six workloads. Each runs against one started server and returns an Outcome.

Statuses: "ok"; "flagged" (a figure exists, but some answers were wrong or
some connections were not held: see the note); "unsupported" (the server does
not do this kind of request); "client error" (the load generator itself could
not open its connections, e.g. out of local ports: the figures say nothing
about the server); "error" (the run broke: see the note). The orchestrator
adds "failed to start".
"""

from __future__ import annotations

import http.client
import math
import resource
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from clientproc import ClientProcess
from probes import Probe, probe_multi_range, probe_single_range, probe_whole
from proctree import cpu_seconds, rss_bytes, sample_rss
from servers import Server
from settings import Settings
from testfiles import TestFiles
from wrkrun import WrkResult, run_wrk, script_file

MIB = 1024 * 1024


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    better: str  # "higher" or "lower"
    digits: int = 0  # decimals shown in the table


@dataclass
class Outcome:
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    note: str = ""
    details: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    settings: Settings
    files: TestFiles
    workdir: Path


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    metrics: tuple[Metric, ...]
    run: Callable[[Server, Context], Outcome]
    rate: bool = True  # a rate under load (noisy): repeated per --rounds, median kept

    def describe(self, settings: Settings) -> str:
        """The title with this run's counts filled in."""
        return self.title.format(**settings.as_dict())


@dataclass
class Measured:
    wrk: WrkResult
    server_cpu_s: float

    @property
    def server_cpu_pct(self) -> float:
        """Share of its one CPU the server used: near 100 means it was the bottleneck."""
        return 100 * self.server_cpu_s / self.wrk.duration_s

    @property
    def client_cpu_pct(self) -> float:
        """Share of its one CPU wrk used: near 100 means the load generator was the limit."""
        return 100 * self.wrk.cpu_s / self.wrk.duration_s


def _measure(
    ctx: Context, server: Server, connections: int, script: str, args=(), path=None
) -> Measured:
    """A warm-up run, then the measured run, with the server's CPU time around it."""
    lua = script_file(script, ctx.workdir)
    url = server.url(path or ctx.files.big_path)
    s = ctx.settings
    run_wrk(s, url, connections, s.warmup, lua, args)
    cpu_before = cpu_seconds(server.sid)
    result = run_wrk(s, url, connections, s.duration, lua, args)
    return Measured(result, cpu_seconds(server.sid) - cpu_before)


def _wrk_problems(result: WrkResult) -> list[str]:
    problems = []
    if result.requests == 0:
        problems.append("no complete response")
    for name, count in result.errors.items():
        if count:
            problems.append(f"{count} {name} errors" if name != "status" else f"{count} non-2xx")
    for name, count in result.counters.items():
        if count:
            problems.append(f"{count} {name.replace('_', ' ')}")
    return problems


def _wrk_outcome(measured: Measured, metrics: dict[str, float], note: str = "") -> Outcome:
    problems = _wrk_problems(measured.wrk)
    if note:
        problems.insert(0, note)
    status = "flagged" if problems else "ok"
    metrics = {
        **metrics,
        "server_cpu_pct": measured.server_cpu_pct,
        "client_cpu_pct": measured.client_cpu_pct,
    }
    return Outcome(status, metrics, "; ".join(problems), {"wrk": measured.wrk.as_dict()})


def _probe_note(probe: Probe) -> str:
    return "" if probe.correct else f"probe: {probe.note}"


def run_small(server: Server, ctx: Context) -> Outcome:
    probe = probe_whole(server.port, ctx.files, ctx.files.small_path, server.tls)
    m = _measure(ctx, server, ctx.settings.small_connections, "plain", path=ctx.files.small_path)
    metrics = {"rps": m.wrk.requests_per_s, "p99_ms": m.wrk.latency_us["p99"] / 1000}
    return _wrk_outcome(m, metrics, _probe_note(probe))


def run_big(server: Server, ctx: Context) -> Outcome:
    probe = probe_whole(server.port, ctx.files, ctx.files.big_path, server.tls)
    m = _measure(ctx, server, ctx.settings.big_connections, "plain")
    gigabytes = m.wrk.bytes / 1e9
    metrics = {
        "gbps": gigabytes / m.wrk.duration_s,
        "cpu_s_per_gb": m.server_cpu_s / gigabytes if gigabytes else float("nan"),
        "cpu_s": m.server_cpu_s,
    }
    return _wrk_outcome(m, metrics, _probe_note(probe))


def run_ranges(server: Server, ctx: Context) -> Outcome:
    s = ctx.settings
    probe = probe_single_range(server.port, ctx.files, s.range_size, server.tls)
    if not probe.supported:
        return Outcome("unsupported", note=probe.note)
    args = (ctx.files.big_path, str(ctx.files.big_size), str(s.range_size))
    m = _measure(ctx, server, s.range_connections, "range", args)
    return _wrk_outcome(m, {"rps": m.wrk.requests_per_s}, _probe_note(probe))


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
    m = _measure(ctx, server, s.multirange_connections, "multirange", args)
    return _wrk_outcome(m, {"rps": m.wrk.requests_per_s}, _probe_note(probe))


CLIENT_ERROR = "client error"


def _failure_causes(event: dict, side: str) -> str:
    """'connect ECONNREFUSED x3, ...' for one side's failures in a client event."""
    prefix = f"{side}: "
    causes = event.get("errors", {})
    return ", ".join(f"{k[len(prefix) :]} x{v}" for k, v in causes.items() if k.startswith(prefix))


def _client_error_note(event: dict) -> str:
    """Why the client failed, when it did; "" when every failure was the server's."""
    failed = event.get("client_failed", 0)
    if not failed:
        return ""
    return (
        f"the client could not open {failed} connection(s) ({_failure_causes(event, 'client')}); "
        "not the server's doing"
    )


PLAIN_CLIENTS = "the idle and slow clients speak plain HTTP only"


def run_idle(server: Server, ctx: Context) -> Outcome:
    if server.tls:
        return Outcome("unsupported", note=PLAIN_CLIENTS)
    s = ctx.settings
    count = s.idle_connections
    baseline = rss_bytes(server.sid)
    with ClientProcess(s, "idle", server.port, ctx.files.small_path, count) as client:
        opened = client.read_event("holding", s.open_timeout + 30)
        rss = sample_rss(server.sid, s.duration)
        client.send("report")
        report = client.read_event("report", 30)
    held = report["held"]
    metrics = {
        "held": held,
        "rss_mib": rss.peak / MIB,
        "baseline_mib": baseline / MIB,
        "kib_per_conn": (rss.peak - baseline) / 1024 / held if held else math.nan,
    }
    status, note = "ok", ""
    if held < count:
        status = "flagged"
        note = f"held {held} of {count} (answered {opened['answered']}, failed {opened['failed']}"
        causes = _failure_causes(opened, "server")
        note += f": {causes})" if causes else ")"
    client_note = _client_error_note(opened)
    if client_note:
        status, note = CLIENT_ERROR, f"{client_note}; {note}" if note else client_note
    return Outcome(status, metrics, note, {"open": opened, "report": report})


SLOW_DELIVERED_PCT = 90  # below this share of their rate, the readers were short-changed


def _slow_delivery(delivered_pct: float, report: dict) -> tuple[str, str]:
    """Readers got too little: whose doing? The client knows how late it was."""
    window = report["window_s"]
    late = report.get("client_late_s", 0.0)
    note = f"readers got {delivered_pct:.0f}% of their rate"
    # Late ticks explain a shortfall of late / window; most of it: the client's.
    if late / window >= (1 - delivered_pct / 100) / 2:
        return CLIENT_ERROR, (
            f"{note}, but the client itself fell {late:.1f} s behind in the {window:.0f} s "
            "window (its CPU was busy): not the server's doing"
        )
    return "flagged", f"{note} (the client kept up: {late:.1f} s behind)"


def run_slow(server: Server, ctx: Context) -> Outcome:
    if server.tls:
        return Outcome("unsupported", note=PLAIN_CLIENTS)
    s = ctx.settings
    count = s.slow_readers
    baseline = rss_bytes(server.sid)
    with ClientProcess(s, "slow", server.port, ctx.files.big_path, count) as client:
        ready = client.read_event("ready", s.open_timeout + 30)
        cpu_before = cpu_seconds(server.sid)
        started = time.monotonic()
        client.send("start")
        rss = sample_rss(server.sid, s.duration)
        client.send("stop")
        cpu = cpu_seconds(server.sid) - cpu_before
        window = time.monotonic() - started
        report = client.read_event("report", 30)
    expected = count * s.slow_rate
    metrics = {
        "rss_mib": rss.peak / MIB,
        "cpu_s": cpu,
        "cpu_pct": 100 * cpu / window,
        "delivered_pct": 100 * report["bytes"] / report["window_s"] / expected,
        "streams": report["ok"],
        "baseline_mib": baseline / MIB,
        "kib_per_stream": (rss.peak - baseline) / 1024 / report["ok"] if report["ok"] else math.nan,
    }
    status, note = "ok", ""
    if report["ok"] < count:
        status = "flagged"
        note = f"{report['ok']} of {count} streams alive with 200 (statuses {ready['statuses']})"
        causes = _failure_causes(ready, "server")
        note += f"; failed: {causes}" if causes else ""
    elif metrics["delivered_pct"] < SLOW_DELIVERED_PCT:
        status, note = _slow_delivery(metrics["delivered_pct"], report)
    client_note = _client_error_note(ready)
    if client_note:
        status, note = CLIENT_ERROR, f"{client_note}; {note}" if note else client_note
    return Outcome(status, metrics, note, {"ready": ready, "report": report})


def _gzip_probe(port: int, path: str, expected: bytes) -> tuple[int | None, str]:
    """The gzip-coded length of `path`, checked against the file; None and why if not coded."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Accept-Encoding": "gzip"})
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        return None, f"probe failed: {exc}"
    finally:
        conn.close()
    if response.getheader("Content-Encoding") != "gzip":
        return None, "does not answer Accept-Encoding: gzip with a gzip coding"
    if zlib.decompress(body, 31) != expected:
        return None, "the gzip answer does not decode to the file"
    return len(body), ""


def run_gzip(server: Server, ctx: Context) -> Outcome:
    """A 100 KiB JSON file asked for with Accept-Encoding: gzip: coded on the fly, then
    from a precompressed sidecar. Figures where wrk used most of its CPU are client-bound."""
    files, s = ctx.files, ctx.settings
    identity = (files.root / files.json_path.lstrip("/")).read_bytes()
    metrics: dict[str, float] = {}
    notes: list[str] = []
    details: dict[str, object] = {}
    for key, path in (("fly", files.json_path), ("static", files.static_json_path)):
        coded, problem = _gzip_probe(server.port, path, identity)
        if coded is None:
            return Outcome("unsupported", note=f"{key}: {problem}")
        lua = script_file("gzip", ctx.workdir)
        run_wrk(s, server.url(path), s.small_connections, s.warmup, lua)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_before = cpu_seconds(server.sid)
        result = run_wrk(s, server.url(path), s.small_connections, s.duration, lua)
        server_cpu = cpu_seconds(server.sid) - cpu_before
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        client_pct = 100 * client_cpu / result.duration_s
        metrics[f"{key}_rps"] = result.requests_per_s
        metrics[f"{key}_ratio"] = coded / len(identity)
        metrics[f"{key}_client_cpu_pct"] = client_pct
        metrics[f"{key}_server_cpu_pct"] = 100 * server_cpu / result.duration_s
        problems = _wrk_problems(result)
        if client_pct >= 90:
            problems.append(f"client-bound (wrk at {client_pct:.0f}% of its CPU)")
        notes.extend(f"{key}: {p}" for p in problems)
        details[key] = result.as_dict()
    return Outcome("flagged" if notes else "ok", metrics, "; ".join(notes), details)


RPS = Metric("rps", "req/s", "req/s", "higher")

WORKLOADS = [
    Workload("small", "1 KiB file, keep-alive, 64 connections", (RPS,), run_small),
    Workload(
        "big",
        "100 MiB file, 4 connections",
        (
            Metric("gbps", "GB/s", "GB/s", "higher", 2),
            Metric("cpu_s_per_gb", "CPU s/GB", "s/GB", "lower", 3),
        ),
        run_big,
    ),
    Workload("ranges", "random 64 KiB ranges in 100 MiB, 64 connections", (RPS,), run_ranges),
    Workload("multirange", "3 ranges of 16 KiB each, 64 connections", (RPS,), run_multirange),
    Workload(
        "gzip",
        "100 KiB JSON with Accept-Encoding: gzip, on the fly and precompressed, 64 connections",
        (
            Metric("fly_rps", "on the fly req/s", "req/s", "higher"),
            Metric("static_rps", "precompressed req/s", "req/s", "higher"),
            Metric("fly_ratio", "ratio", "of the file", "lower", 3),
            Metric("fly_client_cpu_pct", "wrk CPU % (fly)", "%", "lower"),
            Metric("static_client_cpu_pct", "wrk CPU % (static)", "%", "lower"),
        ),
        run_gzip,
    ),
    Workload(
        "idle",
        "{idle_connections:,} idle keep-alive connections",
        (
            Metric("held", "held", "connections", "higher"),
            Metric("rss_mib", "RSS MiB", "MiB", "lower", 1),
        ),
        run_idle,
        rate=False,
    ),
    Workload(
        "slow",
        "{slow_readers:,} slow readers of 100 MiB at 64 KiB/s",
        (
            Metric("rss_mib", "RSS MiB", "MiB", "lower", 1),
            Metric("cpu_s", "CPU s", "s", "lower", 2),
        ),
        run_slow,
        rate=False,
    ),
]
