"""A real PostgreSQL server for tests: Debian's binaries, a throwaway cluster, a free port.

`PostgresServer()` runs `initdb` into a new temporary directory and starts
the server on 127.0.0.1 with a free port, its socket in that directory. As
root (CI), both run as `nobody` through `setpriv`: PostgreSQL refuses to
run as root. The cluster has one superuser, `ferryman`, whose password is
PASSWORD: connections over TCP must give it (scram-sha-256), so the tests
see that a password in `--catalog` is used and never shown.

`url(schema)` is a URL whose connections use their own schema (made by
`new_schema()`): tests share one server and never see each other's
tables. `stop()` and `start()` take the server away and bring it back on
the same port, for the outage tests; `close()` removes everything.

`postgres` (session) and `pg_url` (a fresh schema per test) are the fixtures;
`catalog` gives a test one new catalog on each backend in turn.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.catalog import Catalog, SqliteCatalog
from ferryman.catalog.location import parse_catalog_url
from ferryman.catalog.open import open_catalog

__all__ = ["catalog", "pg_url", "postgres"]  # the fixtures conftest.py offers every test

USER = "ferryman"
PASSWORD = "s3cret-Pa55word"  # the tests look for it in logs and output: it must never show
_counter = itertools.count()


def bin_dir() -> Path | None:
    """Debian's newest PostgreSQL server binaries, if installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major)
    return Path(found[-1]).parent if found else None


def _major(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """`durable`: fsync on (a benchmark); off, the tests' commits cost no disk flush."""

    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable
        found = bin_dir()
        if found is None:
            raise RuntimeError("PostgreSQL is not installed (make test-tools installs it)")
        self.bin = found
        self.dir = Path(tempfile.mkdtemp(prefix="ferryman-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self._as_root = os.geteuid() == 0
        if self._as_root:
            os.chown(self.dir, 65534, 65534)  # nobody: initdb and the server run as it
        pwfile = self.dir / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self._as_root:
            os.chown(pwfile, 65534, 65534)
        self._run("initdb", "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}",
                  "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync")  # fmt: skip
        pwfile.unlink()
        self.start()

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if self._as_root:
            command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                       *command]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True, cwd=self.dir, timeout=120)

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        )
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w",
                  "-t", "60", "-o", options, "start")  # fmt: skip

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.dir, ignore_errors=True)

    def base_url(self, password: bool = True) -> str:
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/postgres"

    def url(self, schema: str) -> str:
        return f"{self.base_url()}?options=-csearch_path%3D{schema}"

    def sql(self, statement: str) -> str:
        """Run one statement over the socket, as the superuser; its output."""
        command = [str(self.bin / "psql"), "-h", str(self.dir), "-p", str(self.port), "-U", USER,
                   "-d", "postgres", "-At", "-v", "ON_ERROR_STOP=1", "-c", statement]  # fmt: skip
        if not Path(command[0]).exists():
            command[0] = "psql"
        done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)
        return done.stdout.strip()

    def new_schema(self) -> str:
        name = f"t{os.getpid()}_{next(_counter)}"
        self.sql(f"CREATE SCHEMA {name}")
        return name


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    if bin_dir() is None:
        pytest.skip("PostgreSQL is not installed: make test-tools installs it")
    server = PostgresServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """A PostgreSQL catalog URL of this test's own (an empty schema)."""
    return postgres.url(postgres.new_schema())


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    """A new, empty catalog on each backend: a SQLite file, and a PostgreSQL schema."""
    if request.param == "sqlite":
        opened: Catalog = SqliteCatalog(tmp_path / "catalog.db")
    else:
        opened = open_catalog(parse_catalog_url(request.getfixturevalue("pg_url")))
    with opened:
        yield opened
