"""CPU time and memory of a server's whole process tree, read from /proc.

Every server is started in its own session (start_new_session=True), so its
tree is every process whose session id is the server's pid: nginx's master and
worker, a Python server's threads, a forked helper.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def stat_fields(text: str) -> list[str]:
    """The fields of a /proc/PID/stat line after the command name (which may itself
    hold spaces and ')'): [0] is the state (field 3), [3] the session (field 6)."""
    return text[text.rindex(")") + 2 :].split()


def stat_cpu_ticks(text: str) -> int:
    """utime + stime + cutime + cstime (fields 14 to 17) of a /proc/PID/stat line,
    in clock ticks: the process's CPU and that of its reaped children."""
    return sum(int(v) for v in stat_fields(text)[11:15])


def _read_stat(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None


def session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        text = _read_stat(int(entry))
        if text is not None and int(stat_fields(text)[3]) == sid:
            pids.append(int(entry))
    return pids


def cpu_seconds(sid: int) -> float:
    """utime+stime of the tree, plus what its reaped children used."""
    ticks = 0
    for pid in session_pids(sid):
        text = _read_stat(pid)
        if text is not None:
            ticks += stat_cpu_ticks(text)
    return ticks / CLOCK_TICKS


def _vm_rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_bytes(sid: int) -> int:
    """Sum of VmRSS over the tree (shared pages count once per process)."""
    return sum(_vm_rss_kib(pid) for pid in session_pids(sid)) * 1024


@dataclass
class RssSamples:
    peak: int
    last: int
    count: int


def sample_rss(sid: int, seconds: float, interval: float = 0.25) -> RssSamples:
    """Sample the tree's RSS for `seconds`; keep the peak and the last value."""
    deadline = time.monotonic() + seconds
    peak = last = count = 0
    while True:
        last = rss_bytes(sid)
        peak = max(peak, last)
        count += 1
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return RssSamples(peak, last, count)
        time.sleep(min(interval, remaining))


def kill_tree(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after `grace`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure no child of it lingers in the group.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return
