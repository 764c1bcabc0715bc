"""The benchmark end to end, briefly: bench/bench.py against ferryman, nginx and the
limit probe, each fixed-request workload and the archive member for one second (wrk's
shortest run) without warm-up, every answer checked before timing. The figures are not
judged (a shared machine); what the run records is: statuses, CPU shares, ratios or
"client-bound", the machine, the probe in the small-file workload only, and the
member asked of ferryman in its archive and of nginx as a plain file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.serverproc import need

REPO = Path(__file__).resolve().parents[2]
FIXED = ("small", "notfound", "notmodified", "head", "close", "member")


def test_the_bench_checks_and_times_every_fixed_request_workload(tmp_path: Path) -> None:
    for tool in ("wrk", "ab", "nginx", "taskset"):
        need(tool)
    argv = [
        sys.executable, str(REPO / "bench" / "bench.py"), "--quick",
        "--duration", "1", "--warmup", "0", "--servers", "ferryman,nginx,probe",
        "--workloads", ",".join(FIXED), "--results-dir", str(tmp_path), "--no-chart",
        "--ferryman", str(Path(sys.executable).parent / "ferryman"),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads((tmp_path / "latest.json").read_text())
    assert "machine: " in done.stdout

    machine = doc["machine"]
    assert machine["cores"] == os.cpu_count()
    assert machine["cpu_model"] and machine["kernel"] and machine["python"]
    assert machine["nginx"][0].isdigit(), machine["nginx"]

    results = {(r["workload"], r["server"]): r for r in doc["results"]}
    assert {s for w, s in results if w != "small"} == {"ferryman", "nginx"}
    assert {s for w, s in results if w == "small"} == {"ferryman", "nginx", "probe"}
    for (workload, server), r in results.items():
        assert r["status"] == "ok", f"{workload} {server}: {r['status']}: {r['note']}"
        assert r["metrics"]["rps"] > 0
        assert 0 < r["metrics"]["client_cpu_pct"] <= 110
        # wrk or ab saturated, against this server or against nginx (the ratio's
        # denominator): the figure is the client's, and no ratio is drawn from it.
        reference = results[(workload, "nginx")]
        if "rps" in r["client_bound"] or "rps" in reference["client_bound"]:
            assert r["ratios"]["rps"] == "client-bound"
        else:
            assert isinstance(r["ratios"]["rps"], float)
    assert "rps" in results[("small", "ferryman")]["limit_ratios"]
    member = next(w["title"] for w in doc["workloads"] if w["key"] == "member")
    assert "nginx: a plain file" in member
    assert results[("notfound", "ferryman")]["limit_ratios"] == {}
