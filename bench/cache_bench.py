"""The cache benchmark: a warm cache against local files, and cold time to first byte.

    make bench-cache [QUICK=1]
    bash bench/run.sh --cache [--quick] [--rounds 3] [--skip-ttfb] ...

run.sh installs nginx and wrk when missing (and bench/.venv-peers, for the
chart), then runs this with the project's .venv Python, which has moto.

1. Warm path: ferryman serving a bucket (moto) through a warm --cache-dir,
   and through a warm --cache-encrypt one, against ferryman serving the same
   files from a local directory (the reference, x1.00): a 1 KiB object, a
   100 MiB object (GB/s, server CPU s/GB) and random 64 KiB ranges of it.
   The main suite's workloads and wrk runs (workloads.py), server on CPU 1,
   wrk on CPU 0. The cache is warmed by one whole GET of each object first, checked
   against the file (a wrong answer is an error for that round).
   Each figure is the median of --rounds rounds (3), the servers taking
   turns within a round, so a noisy moment of the machine hits all of them.
2. Cold time to first byte of a 1 MiB range at 0, 50% and 99% of a 1 GiB
   object (256 MiB with --quick), a fresh cache per offset, for ferryman and
   nginx's proxy_cache (plain, and with the slice module) in front of the
   same moto (cache_ttfb.py).

Prints a table with ratios; writes bench/results/cache-latest.json and,
when matplotlib is importable here or in bench/.venv-peers, cache-latest.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from cache_servers import Upstream, cache_spec, local_spec, nginx_cache_spec, start_upstream
from cache_ttfb import measure_ttfb, render_ttfb
from outcome import Context, Outcome
from probes import probe_whole
from report import build_document, build_results, median_outcome, render_notes, render_table
from servers import Server, ServerSpec, ServerStartError, running_server
from settings import BENCH_DIR, RESULTS_DIR, settings_for
from testfiles import TestFiles, make_test_files
from workloads import WORKLOADS

MIB = 1024 * 1024
REFERENCE = "local"
WARM_WORKLOADS = [w for w in WORKLOADS if w.key in ("small", "big", "ranges")]
PEERS_PYTHON = BENCH_DIR / ".venv-peers" / "bin" / "python"


class WarmUpError(Exception):
    """The server answered the warming GET wrongly: its figures would mean nothing."""


def warm_up(server: Server, files: TestFiles) -> None:
    """One whole GET of each object, so every block is in the cache before measuring;
    each must be a 200 with the file's bytes."""
    for path in (files.small_path, files.big_path):
        probe = probe_whole(server.port, files, path)
        if not probe.correct:
            raise WarmUpError(f"warm-up: {probe.note}")


def run_round(spec: ServerSpec, ctx: Context, round_no: int) -> dict[str, Outcome]:
    """Start the server, warm it, run every warm workload; workload key -> outcome."""
    workdir = ctx.workdir / f"{spec.name}-{round_no}"
    outcomes: dict[str, Outcome] = {}
    try:
        with running_server(spec, ctx.files, workdir, ctx.settings) as server:
            warm_up(server, ctx.files)
            for workload in WARM_WORKLOADS:
                print(f"  round {round_no + 1}, {spec.name}: {workload.key}", flush=True)
                try:
                    outcomes[workload.key] = workload.run(server, ctx)
                except Exception as exc:  # the run goes on
                    outcomes[workload.key] = Outcome("error", note=str(exc))
    except ServerStartError as exc:
        return {w.key: Outcome("failed to start", note=str(exc)) for w in WARM_WORKLOADS}
    except WarmUpError as exc:
        return {w.key: Outcome("error", note=str(exc)) for w in WARM_WORKLOADS}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return outcomes


def run_warm(ctx: Context, upstream: Upstream) -> dict[str, dict[str, Outcome]]:
    """Every warm workload against local files and both caches, `rounds` times over with
    the servers alternating (so a noisy moment hits all of them); each median is kept."""
    specs = [local_spec(), cache_spec(upstream), cache_spec(upstream, encrypt=True)]
    rounds: dict[str, dict[str, list[Outcome]]] = {
        w.key: {spec.name: [] for spec in specs} for w in WARM_WORKLOADS
    }
    for round_no in range(ctx.settings.rounds):
        for spec in specs:
            for key, outcome in run_round(spec, ctx, round_no).items():
                rounds[key][spec.name].append(outcome)
    return {
        key: {name: median_outcome(each) for name, each in by_server.items()}
        for key, by_server in rounds.items()
    }


def draw(doc: dict[str, object], path: Path) -> str:
    """The chart with bench/chart.py, here or with the peers' Python (matplotlib)."""
    try:
        from chart import draw_chart

        draw_chart(doc, path)
        return str(path)
    except ImportError:
        pass
    if not PEERS_PYTHON.exists():
        return "no chart: matplotlib is not installed (run `make bench-cache` once)"
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from chart import draw_chart; "
        "from pathlib import Path; draw_chart(json.load(open(sys.argv[2])), Path(sys.argv[3]))"
    )
    doc_file = path.with_suffix(".json")
    subprocess.run([str(PEERS_PYTHON), "-c", script, str(BENCH_DIR), doc_file, path], check=True)
    return str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run (under 2 minutes)")
    parser.add_argument("--duration", type=float, help="seconds per wrk measurement")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds per workload; the median is reported"
    )
    parser.add_argument("--ttfb-mib", type=int, help="size of the cold object in MiB")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--skip-ttfb", action="store_true")
    parser.add_argument("--skip-warm", action="store_true")
    parser.add_argument(
        "--ttfb-samples", type=int, default=5, help="cold ranges timed per server and offset"
    )
    args = parser.parse_args()
    settings = settings_for(
        args.quick,
        # quick: shorter than the main suite's quick mode, three servers take turns
        duration=args.duration or (2.0 if args.quick else None),
        warmup=0.5 if args.quick else None,
        rounds=args.rounds,
    )
    ttfb_size = (args.ttfb_mib or (256 if args.quick else 1024)) * MIB
    started = datetime.now()
    tmp = Path(tempfile.mkdtemp(prefix="ferryman-cache-bench-"))
    try:
        files = make_test_files(tmp / "files")
        print("starting moto and uploading the test files ...", flush=True)
        upstream = start_upstream(files)
        try:
            ctx = Context(settings, files, tmp / "work")
            (tmp / "work").mkdir()
            print("warm path:", flush=True)
            outcomes = {} if args.skip_warm else run_warm(ctx, upstream)
            ttfb: list[dict[str, object]] = []
            if not args.skip_ttfb:
                print(f"cold time to first byte ({ttfb_size // MIB} MiB object) ...", flush=True)
                specs = [
                    cache_spec(upstream),
                    nginx_cache_spec(upstream),
                    nginx_cache_spec(upstream, sliced=True),
                ]
                ttfb = measure_ttfb(
                    specs, upstream, ttfb_size, files, tmp / "work", settings, args.ttfb_samples
                )
        finally:
            upstream.moto.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results = build_results(outcomes, REFERENCE)
    servers = [
        {"name": "local", "description": "ferryman serve DIR", "version": "local files"},
        {"name": "cache", "description": "ferryman serve s3://, warm cache", "version": "-"},
        {"name": "cache-encrypt", "description": "the same, --cache-encrypt", "version": "-"},
    ]
    doc = build_document(settings, WARM_WORKLOADS, servers, results, started, datetime.now())
    doc["reference"] = REFERENCE
    doc["ttfb"] = {"object_size": ttfb_size, "range": MIB, "rows": ttfb}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    json_path = args.results_dir / "cache-latest.json"
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    print()
    print(f"warm cache vs local files ({settings.mode} mode; x = ratio to {REFERENCE}):")
    print(render_table(doc))
    notes = render_notes(doc)
    if notes:
        print("notes:\n" + notes)
    if ttfb:
        print()
        print(render_ttfb(ttfb, ttfb_size))
    print()
    print(f"JSON: {json_path}")
    print(f"chart: {draw(doc, args.results_dir / 'cache-latest.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
