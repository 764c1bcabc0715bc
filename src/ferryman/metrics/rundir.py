"""The arbiter's side of the metrics: the run's directory, dead workers, restarts.

Each run of a server gets STATE/metrics/<arbiter pid>/, made empty at start,
so two servers sharing a state directory never add up each other's values
and a new run starts from zero. Directories whose arbiter is gone (a server
killed with SIGKILL) are removed by the next start; a run removes its own
when it stops. The workers and the filler find it in the environment they
inherit (exporter.DIRECTORY_ENV).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ferryman.config.state import make_state_dir

if TYPE_CHECKING:
    from prometheus_client.metrics import Counter

DIRECTORY_ENV = "PROMETHEUS_MULTIPROC_DIR"  # the library's name for it; the workers inherit it
RESTARTS = "ferryman_worker_restarts"
RESTARTS_HELP = "Workers (and cache fillers) replaced after an exit nobody asked for."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process holds the number
    return True


def make_run_dir(state: Path, pid: int) -> Path:
    """STATE/metrics/<pid>, empty; stale directories of dead runs removed. OSError if it
    cannot be made."""
    make_state_dir(state)
    base = state / "metrics"
    base.mkdir(mode=0o700, exist_ok=True)
    for entry in base.iterdir():
        if entry.name.isdigit() and int(entry.name) != pid and not _alive(int(entry.name)):
            shutil.rmtree(entry, ignore_errors=True)
    run = base / str(pid)
    shutil.rmtree(run, ignore_errors=True)  # a number reused from a dead run
    run.mkdir(mode=0o700)
    return run


def remove_run_dir(run: Path) -> None:
    with contextlib.suppress(OSError):
        shutil.rmtree(run)


class ArbiterMetrics:
    """What only the arbiter knows: how many workers it had to replace.

    prometheus_client (and what it imports: about 5 MiB of the arbiter's RSS)
    is loaded at the first worker that exits, not at start: a server whose
    workers never exit never carries it. Until the arbiter counts its first
    restart, the workers' zero for the same counter (metrics/exporter.py)
    is what a scrape shows.
    """

    def __init__(self, run: Path) -> None:
        self.run = run
        os.environ[DIRECTORY_ENV] = str(run)  # the workers inherit it
        self._restarts: Counter | None = None  # made at the first restart

    def restarted(self) -> None:
        if self._restarts is None:
            from prometheus_client.metrics import Counter

            from ferryman.metrics.exporter import use_files

            use_files()
            self._restarts = Counter(RESTARTS, RESTARTS_HELP, registry=None)
        self._restarts.inc()

    def reaped(self, pid: int) -> None:
        """A worker exited: its gauges no longer count (its counters do)."""
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid, str(self.run))  # type: ignore[no-untyped-call]
