"""The load generator's own CPU: is a figure the server's, or the client's?

A load generator (wrk, ab) pinned to its cores can only send so many
requests. When it used nearly all of them, the figure says how fast the
client runs, not how fast the server answers: such a figure is
"client-bound", and no ratio is drawn from it.

Its CPU time comes from wait4() on the reaped child (user + system of the
process and its threads), over the wall time from start to reaping.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass

# At or above this share of its cores the generator was the limit (some CPU
# always goes to the kernel's softirq work it is not charged for).
CLIENT_BOUND_SHARE = 0.90
CLIENT_BOUND = "client-bound"


def cpu_list_size(spec: str) -> int:
    """How many CPUs a taskset list names: "0" -> 1, "0-3,6" -> 5."""
    cpus: set[int] = set()
    for part in spec.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"not a CPU list: {spec!r}")
        low, high = int(first), int(last) if dash else int(first)
        if high < low:
            raise ValueError(f"not a CPU list: {spec!r}")
        cpus.update(range(low, high + 1))
    return len(cpus)


def format_cpu_list(cpus: set[int]) -> str:
    """The taskset list of a set of CPUs, runs joined: {0, 2, 3, 4} -> "0,2-4"."""
    parts: list[str] = []
    for cpu in sorted(cpus):
        if parts and parts[-1].split("-")[-1] == str(cpu - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{cpu}"
        else:
            parts.append(str(cpu))
    return ",".join(parts)


@dataclass(frozen=True)
class ClientCpu:
    """What the generator used: CPU seconds over `wall_s` on `cores` CPUs."""

    cpu_s: float
    wall_s: float
    cores: int

    @property
    def share(self) -> float:
        """0..1 of the cores it was pinned to."""
        if self.wall_s <= 0 or self.cores <= 0:
            return 0.0
        return self.cpu_s / (self.wall_s * self.cores)

    @property
    def bound(self) -> bool:
        return is_client_bound(self.share)

    def describe(self, tool: str) -> str:
        core = "core" if self.cores == 1 else "cores"
        return f"{tool} used {100 * self.share:.0f}% of its {self.cores} {core}"

    def as_dict(self) -> dict[str, object]:
        return {
            "cpu_s": round(self.cpu_s, 3),
            "wall_s": round(self.wall_s, 3),
            "cores": self.cores,
            "share": round(self.share, 4),
            "client_bound": self.bound,
        }


def is_client_bound(share: float) -> bool:
    return share >= CLIENT_BOUND_SHARE


@dataclass
class Finished:
    returncode: int
    output: str
    client: ClientCpu


def run_pinned(argv: list[str], cpus: str, timeout: float, threads: int | None = None) -> Finished:
    """Run `argv` on `cpus` (taskset execs it: one child); its output and CPU.
    `threads`: how many cores the program can use at most (ab: 1).

    The child is reaped here with wait4(), for its own rusage: the servers,
    reaped at their stop, never count."""
    cores = min(cpu_list_size(cpus), threads or cpu_list_size(cpus))
    with tempfile.TemporaryFile() as out:
        start = time.monotonic()
        proc = subprocess.Popen(
            ["taskset", "-c", cpus, *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timer = threading.Timer(timeout, _kill_group, (proc.pid,))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            _kill_group(proc.pid)
            proc.wait()
            raise
        finally:
            timer.cancel()
        wall = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        _kill_group(proc.pid)  # nothing of it may linger
        out.seek(0)
        output = out.read().decode("utf-8", "replace")
    cpu = usage.ru_utime + usage.ru_stime
    return Finished(proc.returncode, output, ClientCpu(cpu, wall, cores))


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, 9)
    except OSError:
        pass
