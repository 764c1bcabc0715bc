"""The memory workloads: many idle keep-alive connections, many slow readers.

The clients run in their own process (bench/clients.py) pinned to the client
CPUs; the server's RSS is sampled over its whole process tree.
"""

from __future__ import annotations

import math
import time

from clientproc import ClientProcess
from outcome import Context, Metric, Outcome, Workload
from proctree import cpu_seconds, rss_bytes, sample_rss
from servers import Server

MIB = 1024 * 1024

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


WORKLOADS = [
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
