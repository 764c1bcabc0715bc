"""Drive bench/clients.py: a child process spoken to in JSON lines."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time

from proctree import kill_tree
from settings import BENCH_DIR, HOST, Settings


class ClientError(Exception):
    """The client script died or did not answer in time."""


class ClientProcess:
    def __init__(self, settings: Settings, mode: str, port: int, path: str, count: int) -> None:
        argv = [
            "taskset", "-c", settings.client_cpu,
            sys.executable, str(BENCH_DIR / "clients.py"), mode,
            "--host", HOST, "--port", str(port), "--path", path, "--count", str(count),
            "--rate", str(settings.slow_rate), "--rcvbuf", str(settings.slow_rcvbuf),
            "--open-timeout", str(settings.open_timeout),
            "--sources", str(settings.client_sources),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def read_event(self, expected: str, timeout: float) -> dict:
        """Wait for the next JSON line; it must be the `expected` event."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ClientError(f"no '{expected}' from the client in {timeout:.0f} s")
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if not ready:
                continue
            line = self.proc.stdout.readline()
            if not line:
                raise ClientError(f"client exited before '{expected}': {self._stderr_tail()}")
            event = json.loads(line)
            if event.get("event") != expected:
                raise ClientError(f"expected '{expected}', got {event}")
            return event

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _stderr_tail(self) -> str:
        assert self.proc.stderr is not None
        try:
            self.proc.wait(timeout=5)
            return self.proc.stderr.read().strip()[-400:]
        except subprocess.TimeoutExpired:
            return "(still running)"

    def close(self) -> None:
        kill_tree(self.proc)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> ClientProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
