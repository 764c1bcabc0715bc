"""Shared fixtures: real ferryman processes on 127.0.0.1 port 0, over real files.

- `docroot`: the session's served tree (below);
- `server`: ferryman over that tree on each transfer path (uvloop and the
  stdlib loop, sendfile on and off);
- `ferryman`: a `Servers` (tests/serverproc.py): `ferryman(*flags, root=...)`
  starts a server for this test, stopped when it ends;
- `writable`: a `Writable` (tests/writing.py): the same, accepting writes;
- the S3 fixtures of tests/s3fixtures.py (moto's server, a bucket, the fault proxy).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.catalog import SqliteCatalog
from tests.postgres import *  # noqa: F403  (a real PostgreSQL; `catalog` on each backend)
from tests.s3fixtures import *  # noqa: F403  (moto and the fault proxy, for S3 tests)
from tests.serverproc import TRANSFER_PATHS, ServerProcess, Servers, pattern
from tests.writing import Writable


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
    SqliteCatalog(
        root / ".ferryman" / "catalog.db"
    ).close()  # a real one: a bad one stops the start
    (base / "canary.txt").write_text("CANARY-OUTSIDE-ROOT")
    (root / "escape-link").symlink_to(base / "canary.txt")
    (root / "escape-dir").symlink_to(base)
    (root / "inside-link").symlink_to(root / "hello.txt")
    (root / "hidden-link").symlink_to(root / ".git" / "config")
    os.mkfifo(root / "fifo")
    return root


@pytest.fixture(scope="session", params=TRANSFER_PATHS)
def server(request: pytest.FixtureRequest, docroot: Path) -> Iterator[ServerProcess]:
    """ferryman over each transfer path; small-body 0 so even tiny files take that path."""
    loop, sendfile = request.param
    proc = ServerProcess(docroot, "--loop", loop, "--sendfile", sendfile, "--small-body", "0")
    yield proc
    assert proc.stop() == 0, proc.log_text()


@pytest.fixture
def ferryman(docroot: Path) -> Iterator[Servers]:
    """Start servers with custom flags; all are stopped at the end of the test."""
    servers = Servers(docroot)
    yield servers
    servers.stop_all()


@pytest.fixture
def writable(ferryman: Servers, tmp_path: Path) -> Writable:
    """Start servers that accept writes (token WRITE), their state in tmp_path/state."""
    return Writable(ferryman, tmp_path)
