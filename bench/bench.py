"""ferryman's benchmark suite: every workload against every server, one run.

Run through bench/run.sh (which installs the peers); see bench/README.md.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import traceback
from datetime import datetime
from pathlib import Path

from clientsockets import raise_nofile_limit
from machine import machine_info, machine_line
from outcome import Context, Outcome, Workload
from report import (
    NOT_APPLICABLE,
    build_document,
    build_results,
    median_outcome,
    render_text,
    save_document,
)
from servers import SERVERS, TLS_SERVERS, ServerSpec, ServerStartError, running_server
from settings import DOCS_CHART, REFERENCE, RESULTS_DIR, Settings, settings_for
from testfiles import make_test_files
from versions import server_version
from workloads import WORKLOADS

# The TLS variant (--tls): what HTTPS costs, ferryman and nginx each over HTTP and HTTPS.
TLS_VARIANT_SERVERS = "ferryman,ferryman-https,nginx,nginx-https"
TLS_VARIANT_WORKLOADS = "small,big"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~3 s per workload, fewer clients")
    parser.add_argument(
        "--tls",
        action="store_true",
        help=f"the TLS variant: servers {TLS_VARIANT_SERVERS}, workloads "
        f"{TLS_VARIANT_WORKLOADS} (unless given), saved as tls-latest.json, no chart",
    )
    parser.add_argument("--duration", type=float, help="seconds per measurement (overrides mode)")
    parser.add_argument(
        "--warmup", type=float, help="seconds of unmeasured load before each (0: none)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="run each rate workload this often, servers alternating, and report the median "
        "(default 1; 3 is steadier on a shared machine)",
    )
    parser.add_argument(
        "--idle-connections", type=int, metavar="N", help="idle connections (overrides mode)"
    )
    parser.add_argument(
        "--slow-readers", type=int, metavar="N", help="slow readers (overrides mode)"
    )
    parser.add_argument(
        "--client-sources",
        type=int,
        metavar="N",
        help="loopback source addresses the idle and slow clients spread over (default 8)",
    )
    parser.add_argument(
        "--servers",
        help="comma-separated subset of: "
        + ",".join(s.name for s in SERVERS + TLS_SERVERS)
        + " (default: all but the -https ones)",
    )
    parser.add_argument(
        "--workloads",
        help="comma-separated subset of: " + ",".join(w.key for w in WORKLOADS),
    )
    parser.add_argument("--ferryman", help="ferryman executable (default: .venv/bin/ferryman)")
    parser.add_argument(
        "--ferryman-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for `ferryman serve` (repeat: --ferryman-arg=--sendfile "
        "--ferryman-arg=off)",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--no-docs-chart", action="store_true", help=f"do not copy the chart to {DOCS_CHART}"
    )
    parser.add_argument(
        "--no-chart", action="store_true", help="no chart at all (matplotlib not needed)"
    )
    args = parser.parse_args(argv)
    if args.servers is None:
        args.servers = TLS_VARIANT_SERVERS if args.tls else ",".join(s.name for s in SERVERS)
    if args.workloads is None:
        args.workloads = TLS_VARIANT_WORKLOADS if args.tls else ",".join(w.key for w in WORKLOADS)
    return args


def _select(names: str, items: list, what: str) -> list:
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = {getattr(i, "name", None) or i.key: i for i in items}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        sys.exit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return [known[n] for n in wanted]


def log(message: str) -> None:
    print(message, flush=True)


def summary(outcome: Outcome) -> str:
    figures = ", ".join(f"{k}={v:,.3g}" for k, v in outcome.metrics.items())
    text = outcome.status + (f" {figures}" if figures else "")
    note = outcome.note if len(outcome.note) < 160 else outcome.note[:157] + "..."
    return text + (f" ({note})" if note else "")


def run_one(spec: ServerSpec, workload: Workload, ctx: Context, workdir: Path) -> Outcome:
    """Start the server, run the workload, stop the server: always."""
    with running_server(spec, ctx.files, workdir, ctx.settings) as server:
        try:
            outcome = workload.run(server, ctx)
        except Exception as exc:  # one broken run must not stop the suite
            traceback.print_exc(limit=3)
            outcome = Outcome("error", note=f"{type(exc).__name__}: {exc}")
        if not server.alive():
            outcome.status = "error"
            outcome.note = f"server exited with {server.proc.returncode} during the run"
    return outcome


def run_all(
    specs: list[ServerSpec], workloads: list[Workload], ctx: Context
) -> dict[str, dict[str, Outcome]]:
    """Every workload against every server that takes part in it; a server that
    fails to start once is reported "failed to start" for the rest of the run, and
    one the workload cannot be run against "not applicable" (it is not started)."""
    start_failures: dict[str, str] = {}
    outcomes: dict[str, dict[str, Outcome]] = {}
    for workload in workloads:
        log(f"== {workload.key}: {workload.describe(ctx.settings)}")
        taking_part = [spec for spec in specs if spec.takes_part(workload.key)]
        rounds: dict[str, list[Outcome]] = {spec.name: [] for spec in taking_part}
        unfit = {spec.name: workload.unfit(spec) for spec in taking_part}
        for spec in taking_part:
            if unfit[spec.name]:
                rounds[spec.name].append(Outcome(NOT_APPLICABLE, note=unfit[spec.name]))
                log(f"   {spec.name:<12} {summary(rounds[spec.name][0])}")
        for round_no in range(ctx.settings.rounds if workload.rate else 1):
            for n, spec in enumerate(taking_part):
                if unfit[spec.name]:
                    continue
                if spec.name in start_failures:
                    outcome = Outcome("failed to start", note=start_failures[spec.name])
                else:
                    name = f"{workload.key}-{n}-{spec.name}-{round_no}"
                    try:
                        outcome = run_one(spec, workload, ctx, ctx.workdir / "servers" / name)
                    except ServerStartError as exc:
                        start_failures[spec.name] = str(exc)
                        outcome = Outcome("failed to start", note=str(exc))
                rounds[spec.name].append(outcome)
                log(f"   {spec.name:<12} {summary(outcome)}")
        outcomes[workload.key] = {name: median_outcome(each) for name, each in rounds.items()}
    return outcomes


def write_outputs(doc: dict, args: argparse.Namespace, started: datetime) -> None:
    if args.tls:  # the chart is drawn for the main run's servers; the table says it all here
        stamped = save_document(doc, args.results_dir, started, prefix="tls-")
        log(f"\nsaved {stamped} and {args.results_dir / 'tls-latest.json'}")
        return
    if args.no_chart:
        stamped = save_document(doc, args.results_dir, started)
        log(f"\nsaved {stamped} and {args.results_dir / 'latest.json'}")
        return
    from chart import draw_chart

    stamped = save_document(doc, args.results_dir, started)
    chart = args.results_dir / "latest.png"
    draw_chart(doc, chart)
    log(f"\nsaved {stamped}, {args.results_dir / 'latest.json'} and {chart}")
    if not args.no_docs_chart:
        shutil.copyfile(chart, DOCS_CHART)
        log(f"copied the chart to {DOCS_CHART}")


def exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every `finally` stops its processes."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    settings: Settings = settings_for(
        args.quick,
        duration=args.duration,
        warmup=args.warmup,
        rounds=args.rounds,
        idle_connections=args.idle_connections,
        slow_readers=args.slow_readers,
        client_sources=args.client_sources,
        ferryman=args.ferryman,
        ferryman_args=tuple(args.ferryman_arg) or None,
    )
    specs = _select(args.servers, SERVERS + TLS_SERVERS, "servers")
    workloads = _select(args.workloads, WORKLOADS, "workloads")
    if REFERENCE not in {s.name for s in specs}:
        log(f"note: {REFERENCE} is not in this run, so there are no ratios")
    # Servers and clients inherit the limit; a server needs room for its own files too.
    raise_nofile_limit(max(settings.idle_connections, settings.slow_readers), margin=2048)
    started = datetime.now().astimezone()
    log(f"ferryman benchmark, {settings.mode} mode: {settings.duration:g} s per measurement")
    log(machine_line(machine_info(settings)))
    with tempfile.TemporaryDirectory(prefix="ferryman-bench-") as tmp:
        workdir = Path(tmp)
        files = make_test_files(workdir / "www")
        ctx = Context(settings, files, workdir)
        outcomes = run_all(specs, workloads, ctx)
    finished = datetime.now().astimezone()
    servers = [
        {"name": s.name, "description": s.description, "version": server_version(s.name, settings)}
        for s in specs
    ]
    results = build_results(outcomes, REFERENCE)
    doc = build_document(settings, workloads, servers, results, started, finished)
    log("\n" + render_text(doc))
    write_outputs(doc, args, started)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
