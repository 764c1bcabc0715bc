"""Shared test fixtures: a real ferryman process on 127.0.0.1 port 0, real files.

`pattern(size)` builds self-identifying content: 16-byte records
`<0000000000016>\\n`, each naming its own offset, so a misplaced byte shows
where it came from. The `server` fixture runs ferryman over every transfer
path (uvloop and the stdlib loop, sendfile on and off); `ferryman` starts a
server with any flags for tests that need their own.
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
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.catalog import Catalog
from tests.rawhttp import Conn
from tests.s3fixtures import *  # noqa: F403  (moto and the fault proxy, for S3 tests)

RECORD = 16
READY = re.compile(r"listening on (https?://\S+)")
CI = os.environ.get("CI") == "true"


def pattern(size: int, start: int = 0) -> bytes:
    """Bytes [start, start+size) of the infinite self-identifying stream."""
    first = start - start % RECORD
    records = (size + (start - first) + RECORD - 1) // RECORD + 1
    blob = b"".join(b"<%013d>\n" % (first + i * RECORD) for i in range(records))
    return blob[start - first : start - first + size]


class ServerProcess:
    """A ferryman subprocess; `url` is known once it printed its readiness line."""

    def __init__(
        self,
        root: Path,
        *args: str,
        env: dict[str, str] | None = None,
        stdout: int | None = None,
        wrapper: tuple[str, ...] = (),
    ) -> None:
        """`wrapper` runs the server through a command (e.g. prlimit) that execs it."""
        stdout = subprocess.DEVNULL if stdout is None else stdout
        cmd = [*wrapper, sys.executable, "-m", "ferryman.cli", "serve", str(root), "--port", "0",
               *args]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd,
            stdout=stdout,
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


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.02) -> bool:  # type: ignore[no-untyped-def]
    """Poll a condition (for effects with no readiness signal); True if it held in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


@pytest.fixture(scope="session")
def docroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A served tree: pattern files of many sizes, a directory with index.html,
    one without, dotfiles, a state directory, odd names, and a canary outside."""
    base = tmp_path_factory.mktemp("ferryman")
    root = base / "root"
    root.mkdir()
    for size in (0, 1, 15, 16, 17, 1000, 16384, 16385, 65536, 1_000_000, 5 * 1024 * 1024 + 7):
        (root / f"p{size}.bin").write_bytes(pattern(size))
    (root / "hello.txt").write_text("hello, world\n")
    (root / "page.html").write_text("<!DOCTYPE html><title>x</title>")
    (root / "with index").mkdir()
    (root / "with index" / "index.html").write_text("<h1>index</h1>")
    (root / "plain").mkdir()
    (root / "plain" / "b.txt").write_text("b")
    (root / "plain" / "A.txt").write_text("a")
    (root / "plain" / "sub").mkdir()
    (root / "plain" / "<script>&'\".txt").write_text("odd")
    (root / "plain" / ".secret").write_text("hidden")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("secret")
    (root / ".ferryman").mkdir()
    Catalog(root / ".ferryman" / "catalog.db").close()  # a real one: a bad one stops the start
    (base / "canary.txt").write_text("CANARY-OUTSIDE-ROOT")
    (root / "escape-link").symlink_to(base / "canary.txt")
    (root / "escape-dir").symlink_to(base)
    (root / "inside-link").symlink_to(root / "hello.txt")
    (root / "hidden-link").symlink_to(root / ".git" / "config")
    os.mkfifo(root / "fifo")
    return root


TRANSFER_PATHS = [
    pytest.param(("uvloop", "on"), id="uvloop-sendfile"),
    pytest.param(("uvloop", "off"), id="uvloop-buffered"),
    pytest.param(("asyncio", "on"), id="asyncio-sendfile"),
    pytest.param(("asyncio", "off"), id="asyncio-buffered"),
]


@pytest.fixture(scope="session", params=TRANSFER_PATHS)
def server(request: pytest.FixtureRequest, docroot: Path) -> Iterator[ServerProcess]:
    """ferryman over each transfer path; small-body 0 so even tiny files take that path."""
    loop, sendfile = request.param
    proc = ServerProcess(docroot, "--loop", loop, "--sendfile", sendfile, "--small-body", "0")
    yield proc
    assert proc.stop() == 0, proc.log_text()


@pytest.fixture
def ferryman(docroot: Path) -> Iterator[type[ServerProcess]]:
    """Start servers with custom flags; all are stopped at the end of the test."""
    started: list[ServerProcess] = []

    class Started(ServerProcess):
        def __init__(self, *args: str, root: Path | None = None, **kw: object) -> None:
            super().__init__(root or docroot, *args, **kw)  # type: ignore[arg-type]
            started.append(self)

    yield Started
    for proc in started:
        proc.stop()


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if CI:
            pytest.fail(f"{tool} is not installed (make test-tools installs it)")
        pytest.skip(f"{tool} is not installed")
    return path
