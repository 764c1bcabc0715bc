"""Memory soak: every kind of answer, many times, against one real ferryman worker.

A leak per answer shows only after many answers of that kind: shared 404
errors, whose tracebacks grew with every raise, once took one worker from
31 MiB to 1.16 GiB in about 400,000 requests. So, for each kind of answer
(bench/soak_kinds.py: 200s from memory and zero-copy, HEAD, 206s, 304, 4xx
of every sort, archive members, listings, PUT and DELETE, warm cache hits
plain and encrypted, and 404s in front of S3), this module sends the same requests many times
and compares the worker's VmRSS after a warm-up with its VmRSS after N more
answers.

- wrk drives the load (one thread, 8 connections; one for the writes). wrk
  runs for a duration, not a count: its script (wrk/soak.lua) stops at the
  Nth answer and says so on stdout, and wrk is then ended with SIGINT, as
  Ctrl-C would. The script checks every answer's status against the step
  that asked for it, so a soak that measured the wrong answer fails instead
  of passing. HEAD is the exception: wrk waits for the body a HEAD answer
  announces, so a small asyncio client sends those.
- VmRSS is read from /proc/PID/status of each child of the arbiter (the
  worker, and in front of S3 the cache filler too), after the warm-up and
  after the measurement; the same processes must still be running then.

tests/integration/test_soak.py runs every kind with the short counts (about
two minutes in all on two cores); `make bench-soak` runs this file with the
long ones (100,000 answers of most kinds), prints the table and writes
bench/results/soak-latest.json; `--short` runs the CI counts. It runs as
`python -m bench.soak` from the repository, so that it starts servers with
the tests' own ServerProcess and MotoServer.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from bench.soak_kinds import KINDS, STORE_SETUPS, Counts, Kind, Step, Tree, build_tree, start_server
from tests.s3server import MotoServer
from tests.serverproc import ServerProcess

REPO = Path(__file__).resolve().parents[1]

SCRIPT = Path(__file__).resolve().parent / "wrk" / "soak.lua"
RESULT_PREFIX = "SOAK_RESULT "
LIMIT_LINE = "SOAK_LIMIT"
MIB = 1024 * 1024

# Growth allowed between the reading after the warm-up and the one after the
# measured answers. Measured over 100,000 answers of each kind, the worker
# grows less than 0.2 MiB; the most seen is a one-time step of 1.9 MiB in
# front of S3 (the store 404s, between the 10,000th and the 20,000th, then
# flat) and the catalog's SQLite page cache filling during writes (2.5 MiB,
# then flat). A leak of 1 KiB per answer grows 9.8 MiB in 10,000 answers.
THRESHOLD = 4 * MIB
SETTLE = 0.3  # seconds for the worker to close wrk's connections before a reading


# -- the worker's memory ----------------------------------------------------------------


def children(pid: int) -> dict[int, str]:
    """The arbiter's children: pid -> "worker" or "filler" (slot 0)."""
    found: dict[int, str] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            slot = argv[argv.index(b"--slot") + 1] if b"--slot" in argv else b""
            found[int(child)] = "filler" if slot == b"0" else "worker"
    return found


def vm_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


# -- load -----------------------------------------------------------------------------


class SoakError(Exception):
    """wrk did not run, or the answers were not the ones this kind is about."""


@dataclass
class Load:
    """What the answers of one run were."""

    responses: int
    seconds: float
    statuses: dict[str, int]
    mismatched: int
    errors: dict[str, int]


def _etags(srv: ServerProcess, kind: Kind) -> dict[str, str]:
    """The current ETag of each target whose step sends one back."""
    etags = {}
    for step in kind.steps:
        if any("{etag}" in value for _, value in step.headers):
            etag = _send(srv, Step("HEAD", step.target, 200)).getheader("ETag")
            if not etag:
                raise SoakError(f"{kind.title}: no ETag for {step.target}")
            etags[step.target] = etag
    return etags


def _send(srv: ServerProcess, step: Step) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
    try:
        conn.request(step.method, step.target, body=b"x" * step.body, headers=dict(step.headers))
        response = conn.getresponse()
        response.read()
        return response
    finally:
        conn.close()


def _wrk(srv: ServerProcess, kind: Kind, count: int) -> dict[str, object]:
    """One wrk run that soak.lua ends at the `count`th answer (wrk itself runs for a
    duration: the script says when, and SIGINT ends the run, as Ctrl-C would)."""
    args = [step.script_arg(_etags(srv, kind)) for step in kind.steps]
    seconds = 60 + count // 100  # an upper bound only: a server that stalls fails the soak
    argv = [
        "wrk", "-t1", f"-c{kind.connections}", f"-d{seconds}s", "--timeout", "10s",
        "-s", str(SCRIPT), srv.url, "--", str(count), *args,
    ]  # fmt: skip
    wrk = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    timer = threading.Timer(seconds + 60, wrk.kill)
    timer.start()
    try:
        assert wrk.stdout is not None
        output = []
        for line in wrk.stdout:
            output.append(line)
            if line.startswith(LIMIT_LINE):
                wrk.send_signal(signal.SIGINT)
    finally:
        timer.cancel()
        if wrk.poll() is None:
            wrk.kill()
        wrk.wait()
        if wrk.stdout is not None:
            wrk.stdout.close()
    for line in output:
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])  # type: ignore[no-any-return]
    raise SoakError(f"{kind.title}: wrk exited {wrk.returncode}: {''.join(output)}")


async def _head_answers(srv: ServerProcess, kind: Kind, count: int) -> dict[str, object]:
    """Exactly `count` HEAD answers over `kind.connections` keep-alive connections.

    wrk cannot take a HEAD answer: it waits for the body its Content-Length
    announces. An answer to HEAD is a head only, so reading up to the blank
    line reads all of it.
    """
    statuses: dict[str, int] = {}
    mismatched = 0
    left = count

    async def client() -> None:
        nonlocal left, mismatched
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        try:
            while left > 0:
                left -= 1
                step = kind.steps[left % len(kind.steps)]
                fields = "".join(f"{name}: {value}\r\n" for name, value in step.headers)
                writer.write(f"HEAD {step.target} HTTP/1.1\r\nHost: soak\r\n{fields}\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                status = head.split(b" ", 2)[1].decode()
                statuses[status] = statuses.get(status, 0) + 1
                mismatched += status != str(step.status)
        finally:
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(client() for _ in range(kind.connections)))
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    return {"responses": count, "mismatched": mismatched, "errors": errors, "statuses": statuses}


def drive(srv: ServerProcess, kind: Kind, count: int) -> Load:
    """`count` answers of this kind (a few more in flight may follow); raise unless
    every one had its step's status."""
    if kind.reset is not None:
        _send(srv, kind.reset)
    started = time.monotonic()
    if all(step.method == "HEAD" for step in kind.steps):
        found = asyncio.run(_head_answers(srv, kind, count))
    else:
        found = _wrk(srv, kind, count)
    load = Load(seconds=time.monotonic() - started, **found)  # type: ignore[arg-type]
    return _checked(kind, count, load)


def _checked(kind: Kind, count: int, load: Load) -> Load:
    expected = {str(step.status) for step in kind.steps}
    unexpected = {s: n for s, n in load.statuses.items() if s not in expected}
    errors = {name: n for name, n in load.errors.items() if n}
    if load.responses < count or load.mismatched or unexpected or errors:
        raise SoakError(
            f"{kind.title}: {load.responses} of {count} answers, statuses {load.statuses} "
            f"(expected {sorted(expected)}), {load.mismatched} mismatched, errors {errors}"
        )
    return load


# -- one kind ----------------------------------------------------------------------


@dataclass
class Outcome:
    kind: str  # its key
    title: str
    requests: int  # answers counted after the warm-up
    warmup: int
    process: str  # "worker" or "filler"
    pid: int
    rss_warm: int  # bytes, after the warm-up
    rss_after: int  # bytes, after `requests` more answers

    @property
    def growth(self) -> int:
        return self.rss_after - self.rss_warm

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "growth": self.growth}


def soak(srv: ServerProcess, kind: Kind, counts: Counts) -> list[Outcome]:
    """Warm up, read VmRSS, answer `counts.requests` more of `kind`, read VmRSS again.

    One Outcome per child of the arbiter (the worker; in front of S3 the
    filler too); raises SoakError if the answers were wrong or a child was
    replaced meanwhile (its memory would then say nothing).
    """
    drive(srv, kind, counts.warmup)
    time.sleep(SETTLE)
    procs = children(srv.proc.pid)
    warm = {pid: vm_rss(pid) for pid in procs}
    load = drive(srv, kind, counts.requests)
    time.sleep(SETTLE)
    if children(srv.proc.pid) != procs:
        raise SoakError(f"{kind.title}: a process was replaced during the soak:\n{srv.log_text()}")
    return [
        Outcome(kind.key, kind.title, load.responses, counts.warmup, role, pid, warm[pid],
                vm_rss(pid))
        for pid, role in sorted(procs.items(), key=lambda item: item[1] != "worker")
    ]  # fmt: skip


# -- make bench-soak ----------------------------------------------------------------------


def _mib(n: int) -> str:
    return f"{n / MIB:.1f}"


def render_table(outcomes: list[Outcome]) -> str:
    rows = [
        "| kind | process | requests | RSS after warm-up MiB | RSS after MiB | growth MiB |",
        "|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        rows.append(
            f"| {o.title} | {o.process} | {o.requests:,} | {_mib(o.rss_warm)} | "
            f"{_mib(o.rss_after)} | {o.growth / MIB:+.2f} |"
        )
    return "\n".join(rows)


@contextmanager
def servers(tree: Tree, setups: list[str]) -> Iterator[dict[str, ServerProcess]]:
    with ExitStack() as stack:
        moto = stack.enter_context(MotoServer()) if STORE_SETUPS.intersection(setups) else None
        started: dict[str, ServerProcess] = {}
        stack.callback(lambda: [srv.stop() for srv in started.values()])
        for setup in setups:
            started[setup] = start_server(setup, tree, moto)
        yield started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="the CI counts, not the long ones")
    parser.add_argument("--kinds", default="", help="comma-separated keys (default: all)")
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    opts = parser.parse_args()
    wanted = {key.strip() for key in opts.kinds.split(",") if key.strip()}
    kinds = [kind for kind in KINDS if not wanted or kind.key in wanted]
    started = datetime.now().astimezone()
    outcomes: list[Outcome] = []
    request_path = ""
    with tempfile.TemporaryDirectory(prefix="ferryman-soak-") as base:
        tree = build_tree(Path(base))
        with servers(tree, list(dict.fromkeys(kind.setup for kind in kinds))) as running:
            for kind in kinds:
                srv = running[kind.setup]
                found = soak(srv, kind, kind.short if opts.short else kind.long)
                for o in found:
                    print(f"{o.title:32} {o.process:6} {o.requests:>8,}  "
                          f"{_mib(o.rss_warm):>6} -> {_mib(o.rss_after):>6} MiB "
                          f"({o.growth / MIB:+.2f})", flush=True)  # fmt: skip
                outcomes.extend(found)
                request_path = request_path or _request_path(srv)
    failed = [o for o in outcomes if o.growth > THRESHOLD]
    print("\n" + render_table(outcomes))
    document = {
        "schema": 1,
        "mode": "short" if opts.short else "long",
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": {
            "cpus": os.cpu_count(),
            "cpu": _cpu_model(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "request_path": request_path,
        },
        "threshold": THRESHOLD,
        "results": [o.as_dict() for o in outcomes],
        "failed": [o.kind for o in failed],
    }
    opts.results_dir.mkdir(parents=True, exist_ok=True)
    path = opts.results_dir / ("soak-short.json" if opts.short else "soak-latest.json")
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwritten: {path}")
    for o in failed:
        print(f"FAILED: {o.title} ({o.process}) grew {o.growth / MIB:.2f} MiB", file=sys.stderr)
    return 1 if failed else 0


def _request_path(srv: ServerProcess) -> str:
    """What the readiness line says of the request path (compiled or pure Python)."""
    found = re.search(r"request path ([^,)(]+)", srv.log_text())
    return found.group(1).strip() if found else "unknown"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


if __name__ == "__main__":
    sys.exit(main())
