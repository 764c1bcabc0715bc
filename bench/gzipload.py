"""The gzip workload: a 100 KiB JSON file asked for with Accept-Encoding: gzip, coded
on the fly and from a precompressed sidecar."""

from __future__ import annotations

import http.client
import zlib

from measure import measure_wrk, measured_outcome
from outcome import Context, Metric, Outcome, Workload
from servers import Server


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
    """Each of the two measurements has its own figures, notes and client-bound keys."""
    files, s = ctx.files, ctx.settings
    identity = (files.root / files.json_path.lstrip("/")).read_bytes()
    merged = Outcome("ok")
    notes: list[str] = []
    for key, path in (("fly", files.json_path), ("static", files.static_json_path)):
        coded, problem = _gzip_probe(server.port, path, identity)
        if coded is None:
            return Outcome("unsupported", note=f"{key}: {problem}")
        m = measure_wrk(ctx, server, s.small_connections, "gzip", path=path)
        metrics = {"rps": m.load.requests_per_s, "ratio": coded / len(identity)}
        one = measured_outcome(m, metrics, ("rps",), m.load.problems())
        merged.metrics.update({f"{key}_{k}": v for k, v in one.metrics.items()})
        merged.client_bound += [f"{key}_{k}" for k in one.client_bound]
        merged.details[key] = one.details
        if one.status != "ok":
            merged.status = "flagged"
        notes += [f"{key}: {n}" for n in one.note.split("; ") if n]
    merged.note = "; ".join(notes)
    return merged


WORKLOADS = [
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
]
