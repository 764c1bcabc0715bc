"""Real ferryman processes for tests: `ServerProcess`, and `Servers`, the `ferryman` fixture.

`ServerProcess(root, *flags)` runs `ferryman serve ROOT --port 0 FLAGS` and
returns once the server printed its readiness line; `srv.get(target)` and
`srv.request(method, target, headers, body)` send one request on a new
connection (tests/rawhttp.py), `srv.connect()` opens one to keep. `Servers`
starts processes over the shared docroot (or any root, a directory or
`s3://bucket/prefix`) and stops them all when the test ends.

`pattern(size)` builds self-identifying content: 16-byte records
`<0000000000016>\\n`, each naming its own offset, so a misplaced byte shows
where it came from. `wait_until` polls an effect that has no readiness signal.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import pytest

from tests.rawhttp import Conn, RawResponse

RECORD = 16
READY = re.compile(r"listening on (https?://\S+)")
CI = os.environ.get("CI") == "true"

# The four ways a worker sends a body: each event loop, with and without sendfile.
TRANSFER_PATHS = [
    pytest.param(("uvloop", "on"), id="uvloop-sendfile"),
    pytest.param(("uvloop", "off"), id="uvloop-buffered"),
    pytest.param(("asyncio", "on"), id="asyncio-sendfile"),
    pytest.param(("asyncio", "off"), id="asyncio-buffered"),
]

Output = int | IO[str] | None  # what subprocess.Popen takes for stdout


def pattern(size: int, start: int = 0) -> bytes:
    """Bytes [start, start+size) of the infinite self-identifying stream."""
    first = start - start % RECORD
    records = (size + (start - first) + RECORD - 1) // RECORD + 1
    blob = b"".join(b"<%013d>\n" % (first + i * RECORD) for i in range(records))
    return blob[start - first : start - first + size]


def wait_until(predicate: Callable[[], object], timeout: float = 5.0,
               interval: float = 0.02) -> bool:  # fmt: skip
    """Poll a condition (for effects with no readiness signal); True if it held in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def need(tool: str) -> str:
    """The path of a command-line tool a test drives; skip (fail in CI) without it."""
    path = shutil.which(tool)
    if path is None:
        if CI:
            pytest.fail(f"{tool} is not installed (make test-tools installs it)")
        pytest.skip(f"{tool} is not installed")
    return path


class ServerProcess:
    """A ferryman subprocess; `url` is known once it printed its readiness line."""

    def __init__(
        self,
        root: Path | str,
        *flags: str,
        env: Mapping[str, str] | None = None,
        stdout: Output = None,
        wrapper: Sequence[str] = (),
    ) -> None:
        """`root` is SOURCE: a directory or `s3://bucket/prefix`. `wrapper` runs the
        server through a command (e.g. prlimit) that execs it."""
        cmd = [*wrapper, sys.executable, "-m", "ferryman.cli", "serve", str(root), "--port", "0",
               *flags]  # fmt: skip
        self.proc: subprocess.Popen[str] = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL if stdout is None else stdout,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.url = ""
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        if not self._ready.wait(15) or not self.url:
            self.stop()
            raise RuntimeError("ferryman did not start:\n" + "\n".join(self.lines))
        host_port = self.url.partition("://")[2]
        self.host, _, port = host_port.rpartition(":")
        self.port = int(port)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            match = READY.search(line)
            if match and not self.url:
                self.url = match.group(1)
                self._ready.set()
        self._ready.set()

    def connect(self, timeout: float = 10.0) -> Conn:
        return Conn(socket.create_connection((self.host, self.port), timeout=timeout))

    def request(self, method: str, target: str, headers: Mapping[str, str] | None = None,
                body: bytes = b"", *, timeout: float = 30.0) -> RawResponse:  # fmt: skip
        """One request on a new connection (tests/rawhttp.py's request_bytes); its response."""
        with self.connect(timeout) as conn:
            return conn.request(method, target, headers, body)

    def get(self, target: str, headers: Mapping[str, str] | None = None, *,
            timeout: float = 30.0) -> RawResponse:  # fmt: skip
        return self.request("GET", target, headers, timeout=timeout)

    def child_pids(self) -> list[int]:
        """The arbiter's children: its workers (and the cache filler, if any)."""
        pid = self.proc.pid
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]

    def log_text(self) -> str:
        return "\n".join(self.lines)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return self.proc.returncode


class Servers:
    """What the `ferryman` fixture gives a test: `ferryman(*flags)` starts a server over
    the shared docroot (or `root=`); every one started is stopped when the test ends."""

    def __init__(self, docroot: Path) -> None:
        self.docroot = docroot
        self.started: list[ServerProcess] = []

    def __call__(
        self,
        *flags: str,
        root: Path | str | None = None,
        env: Mapping[str, str] | None = None,
        stdout: Output = None,
        wrapper: Sequence[str] = (),
    ) -> ServerProcess:
        srv = ServerProcess(
            self.docroot if root is None else root, *flags, env=env, stdout=stdout, wrapper=wrapper
        )
        self.started.append(srv)
        return srv

    def stop_all(self) -> None:
        for srv in self.started:
            srv.stop()
