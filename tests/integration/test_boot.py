"""The boot step: each resource that cannot be used stops the start with one clear line.

Every failure here is a real one: files and directories made wrong, read-only
tmpfs mounts, moto's S3 server with a missing bucket or refusing
credentials, an endpoint nobody listens on, one that never accepts, and a
fault proxy answering 500. The expectations: exit status 2, one
`cannot start:` line naming the resource, no traceback, no worker started;
or, for a store that cannot be reached, a server that starts and answers
502 without telling the client where its store is.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ferryman.catalog import SqliteCatalog
from tests.faultproxy import FaultProxy, Rule
from tests.mounts import tmpfs
from tests.rawhttp import RawResponse
from tests.s3server import ACCESS_KEY, SECRET_KEY, MotoServer
from tests.s3server import s3_env as environment_for
from tests.serverproc import ServerProcess, Servers, pattern, wait_until
from tests.writing import Writable, write_flags


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`ferryman serve ARGS --port 0` expected to stop at boot (a start would hang here)."""
    return subprocess.run(
        [sys.executable, "-m", "ferryman.cli", "serve", *args, "--port", "0"],
        capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})},
    )  # fmt: skip


def refused(done: subprocess.CompletedProcess[str], *named: str) -> str:
    """The one `cannot start` line of a boot failure, which names each of `named`."""
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "started worker" not in done.stderr and "filler" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if "cannot start:" in line]
    assert len(lines) == 1, done.stderr
    for text in named:
        assert text in lines[0], lines[0]
    return lines[0]


@contextmanager
def read_only_mount(where: Path, fill: Callable[[Path], None]) -> Iterator[Path]:
    """A small tmpfs at `where`, filled by `fill`, then remounted read-only."""
    with tmpfs(where, "4m", fill, read_only=True) as mount:
        yield mount


# -- the catalog --------------------------------------------------------------------------


@pytest.mark.parametrize("writes", [False, True], ids=["read-only", "allow-write"])
def test_an_empty_catalog_stops_the_start_and_is_left_as_it_is(
    tmp_path: Path, writes: bool
) -> None:
    """SQLite would take a zero-length file for a new database and fill it with empty tables."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "catalog.db").write_bytes(b"")
    flags = write_flags(tmp_path) if writes else []
    done = serve(str(tmp_path), "--state-dir", str(state), *flags)
    refused(done, f"catalog {state / 'catalog.db'} is empty", "restore it from a backup")
    assert (state / "catalog.db").stat().st_size == 0
    assert sorted(p.name for p in state.iterdir()) == ["catalog.db"]


@pytest.mark.parametrize("writes", [False, True], ids=["read-only", "allow-write"])
def test_a_catalog_that_is_not_a_file_stops_the_start(tmp_path: Path, writes: bool) -> None:
    (tmp_path / ".ferryman" / "catalog.db").mkdir(parents=True)
    flags = write_flags(tmp_path) if writes else []
    refused(serve(str(tmp_path), *flags), "catalog.db is not a regular file")


def test_a_catalog_on_a_read_only_filesystem_stops_a_read_only_server(tmp_path: Path) -> None:
    """Before: a warning, and the server went on without Repr-Digest."""
    with read_only_mount(
        tmp_path / "state", lambda d: SqliteCatalog(d / "catalog.db").close()
    ) as state:
        line = refused(serve(str(tmp_path), "--state-dir", str(state)), f"{state}/catalog.db")
    assert "--state-dir" in line


def test_a_missing_catalog_is_made_only_when_writes_are_allowed(
    ferryman: Servers, writable: Writable, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    ferryman(root=root).stop()
    # The state directory is made (its metrics/ holds a run's metrics), the catalog is not.
    assert not (root / ".ferryman" / "catalog.db").exists()
    writable(root=root, state=None).stop()
    catalog = root / ".ferryman" / "catalog.db"
    assert catalog.stat().st_size > 0
    with SqliteCatalog(catalog) as cat:
        assert cat.count() == 0
    # No temporary left beside it by its creation.
    assert sorted(p.name for p in catalog.parent.iterdir() if "catalog" in p.name) == ["catalog.db"]


def test_a_catalog_emptied_while_serving_stops_the_next_worker_not_the_running_ones(
    writable: Writable, tmp_path: Path
) -> None:
    """What changed between the arbiter's check and a worker's start is a boot failure
    there too: here the new worker of a rolling restart, so the old ones go on."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "hello.txt").write_text("hello")
    srv = writable("--workers", "2", root=root, state=None)
    os.truncate(root / ".ferryman" / "catalog.db", 0)
    srv.signal(signal.SIGHUP)
    assert wait_until(lambda: "rolling restart abandoned" in srv.log_text(), 15), srv.log_text()
    abandoned = next(line for line in srv.lines if "rolling restart abandoned" in line)
    assert "catalog.db is empty" in abandoned
    assert "Traceback" not in srv.log_text()
    with srv.connect() as conn:
        assert conn.get("/hello.txt").body == b"hello"
    assert (root / ".ferryman" / "catalog.db").stat().st_size == 0


# -- the state and cache directories, the cache key ----------------------------------------

UNREACHABLE = "http://127.0.0.1:9"  # discard: nobody listens; the local checks come first


def test_a_state_directory_that_is_a_file_stops_a_writing_server(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.write_text("not a directory")
    done = serve(str(tmp_path), "--state-dir", str(state), *write_flags(tmp_path))
    refused(done, f"state directory {state} (--state-dir) is not a directory")


def test_a_cache_directory_that_is_a_file_stops_the_start(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.write_text("not a directory")
    done = serve("s3://bucket", "--s3-endpoint", UNREACHABLE, "--cache-dir", str(cache),
                 "--state-dir", str(tmp_path / "state"))  # fmt: skip
    refused(done, f"cache directory {cache} (--cache-dir) is not a directory")


def test_a_read_only_cache_directory_stops_the_start(tmp_path: Path) -> None:
    """Before: the cache filler's traceback, restarted until the budget ran out (status 3)."""
    with read_only_mount(tmp_path / "cache", lambda d: None) as cache:
        done = serve("s3://bucket", "--s3-endpoint", UNREACHABLE, "--cache-dir", str(cache),
                     "--state-dir", str(tmp_path / "state"))  # fmt: skip
    refused(done, f"cache directory {cache} (--cache-dir): cannot write in it",
            "Read-only file system")  # fmt: skip


@pytest.mark.parametrize("kind", ["short", "directory", "fifo"])
def test_a_bad_cache_key_file_stops_the_start(tmp_path: Path, kind: str) -> None:
    """A FIFO used to hang the arbiter for good, waiting for a writer."""
    key = tmp_path / "cache.key"
    if kind == "short":
        key.write_bytes(b"0123456789")
        key.chmod(0o600)
    elif kind == "directory":
        key.mkdir(mode=0o700)
    else:
        os.mkfifo(key, 0o600)
    cache = str(tmp_path / "cache")
    done = serve("s3://bucket", "--s3-endpoint", UNREACHABLE, "--cache-dir", cache,
                 "--cache-encrypt", "--cache-key-file", str(key))  # fmt: skip
    line = refused(done, f"cache key {key}")
    expected = "holds 10 bytes" if kind == "short" else "is not a regular file"
    assert expected in line and "move it away" in line


def test_the_cheapest_mistake_is_reported_first(tmp_path: Path) -> None:
    """A missing tokens file is found before an empty catalog, the cache before the store."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "catalog.db").write_bytes(b"")
    done = serve(str(tmp_path), "--state-dir", str(state), "--allow-write",
                 "--tokens", str(tmp_path / "no-tokens"))  # fmt: skip
    refused(done, "tokens file")
    (tmp_path / "cache").write_text("x")
    done = serve("s3://no-such-bucket", "--s3-endpoint", UNREACHABLE, "--cache-dir",
                 str(tmp_path / "cache"), "--state-dir", str(tmp_path / "other"))  # fmt: skip
    refused(done, "cache directory")


# -- the store ------------------------------------------------------------------------------


def test_a_missing_bucket_stops_the_start(moto_server: MotoServer) -> None:
    done = serve("s3://no-such-bucket-here", env=environment_for(moto_server.url))
    refused(done, "no-such-bucket-here", "the bucket does not exist", "NoSuchBucket")


def test_refused_credentials_stop_the_start(tmp_path: Path) -> None:
    """moto checks signatures only with its IAM on (auth=True): then any key is unknown."""
    with MotoServer(auth=True) as refusing:
        done = serve("s3://some-bucket", env=environment_for(refusing.url))
    line = refused(done, "some-bucket", "the credentials were refused", "InvalidAccessKeyId")
    assert SECRET_KEY not in line


def assert_no_endpoint(response: RawResponse, endpoint: str) -> None:
    """Neither the store's host:port nor the credentials, in the body or any header."""
    host_port = endpoint.removeprefix("http://").encode()
    port = host_port.rpartition(b":")[2]
    seen = response.body + b"".join(
        name.encode() + b": " + value.encode() for name, value in response.headers
    )
    for secret in (host_port, port, ACCESS_KEY.encode(), SECRET_KEY.encode()):
        assert secret not in seen, (secret, seen)


def store_server(ferryman: Servers, endpoint: str, *args: str) -> ServerProcess:
    return ferryman(*args, root="s3://any-bucket", env=environment_for(endpoint))


def test_an_endpoint_nobody_listens_on_starts_and_answers_502_without_naming_it(
    ferryman: Servers,
) -> None:
    with socket.socket() as unused:  # a port that was free a moment ago: refused
        unused.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{unused.getsockname()[1]}"
    srv = store_server(ferryman, endpoint)
    warning = [line for line in srv.lines if "cannot be reached" in line]
    assert len(warning) == 1 and endpoint in warning[0], srv.log_text()  # the log names it
    with srv.connect() as conn:
        for target in ("/a/file.bin", "/a/"):
            response = conn.get(target)
            assert response.status == 502, response.body
            assert b"store_failed" in response.body
            assert_no_endpoint(response, endpoint)
    assert "Traceback" not in srv.log_text()


def test_an_endpoint_that_never_accepts_times_out_without_naming_it(
    ferryman: Servers,
) -> None:
    """A listener whose queue is full: connections hang until the client's connect timeout."""
    with socket.socket() as blackhole, socket.socket() as filler:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(0)
        filler.connect(blackhole.getsockname())  # the one queued connection it allows
        endpoint = f"http://127.0.0.1:{blackhole.getsockname()[1]}"
        srv = store_server(ferryman, endpoint)
        assert any("cannot be reached" in line for line in srv.lines), srv.log_text()
        with srv.connect(timeout=30) as conn:
            response = conn.get("/slow.bin")
        assert response.status == 502, response.body
        assert_no_endpoint(response, endpoint)
        assert "Timeout" in response.body.decode()


def test_store_server_errors_answer_502_without_naming_it(
    ferryman: Servers, moto_server: MotoServer, s3_bucket: str
) -> None:
    moto_server.put_object(s3_bucket, "obj.bin", pattern(1000))
    with FaultProxy(moto_server.url) as proxy:
        env = {**environment_for(proxy.url)}
        srv = ferryman(root=f"s3://{s3_bucket}", env=env)
        with srv.connect() as conn:
            assert conn.get("/obj.bin").body == pattern(1000)
            proxy.add(Rule(error_status=500, times=None))
            response = conn.get("/obj.bin")
            assert response.status == 502, response.body
            assert_no_endpoint(response, proxy.url)
            proxy.clear()
            assert conn.get("/obj.bin").body == pattern(1000)
        assert wait_until(lambda: "answers again" in srv.log_text(), 5), srv.log_text()
        failing = [line for line in srv.lines if " fails: " in line]
        assert len(failing) == 1 and proxy.url in failing[0], srv.log_text()
