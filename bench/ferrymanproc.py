"""A ferryman started by a benchmark script on a free port, once it says it listens.

`start` runs `ferryman serve ...` in its own session (for proctree's CPU
accounting) with its log in a file, and waits for the readiness line
("listening on http://HOST:PORT"); `stop` ends its process group
(proctree.kill_tree). For the scripts that need flags the main bench's
servers do not take: writes, a catalog, a bucket (fleet_bench.py,
put_bench.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from proctree import kill_tree
from settings import FERRYMAN

READY = re.compile(r"listening on https?://(\S+)")


@dataclass
class Started:
    proc: subprocess.Popen[bytes]
    address: str  # host:port

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])


def start(
    source: str,
    flags: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    cpus: str | None = None,
    timeout: float = 30.0,
) -> Started:
    """`ferryman serve SOURCE --port 0 FLAGS`, pinned to `cpus` when given."""
    argv = [str(FERRYMAN), "serve", source, "--port", "0", *flags]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=out,
                                env={**os.environ, **(env or {})},
                                start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        found = READY.search(log.read_text())
        if found:
            return Started(proc, found.group(1))
        time.sleep(0.05)
    kill_tree(proc)
    raise RuntimeError(f"ferryman did not start: {log.read_text()[-500:]}")


def stop(started: Started) -> None:
    kill_tree(started.proc, grace=30.0)
