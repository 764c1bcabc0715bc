"""A full, read-only or vanished cache disk never costs a read (decisions/0018).

The cache directory is a small tmpfs: filled with ballast, remounted
read-only, or removed. Every read meanwhile must be answered 200 or 206 with
the object's exact bytes, from the store; the filler must log the condition
once, report it when asked, and use the cache again once it clears.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faultproxy import FaultProxy
from tests.integration.test_cache_gateway import MIB, Gateway, entry_dirs
from tests.mounts import remount
from tests.mounts import tmpfs as mounted
from tests.s3server import MotoServer
from tests.serverproc import ServerProcess, pattern, wait_until

SIZE = 3 * MIB + 4321
NO_SPACE = "degraded: no space left on the cache disk"
READ_ONLY = "degraded: the cache disk is read-only"
GONE = "degraded: the cache directory is gone"
CLEARED = "cache: usable again"


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, unmounted at the end (skipped where mounting is refused)."""
    with mounted(tmp_path / "cachefs", "8m") as mount:
        yield mount


@pytest.fixture
def gateway(moto_server: MotoServer, fault_proxy: FaultProxy, tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(moto_server, fault_proxy, tmp_path)
    for n in range(8):
        gw.put(f"o{n}.bin", pattern(SIZE, 5000 * n))
    yield gw
    gw.stop()


def data(n: int) -> bytes:
    return pattern(SIZE, 5000 * n)


def filler_health(cache: Path) -> str:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(cache / "filler.sock"))
        sock.sendall(b'{"op": "health"}\n')
        line = sock.makefile("rb").readline()
    state: str = json.loads(line)["state"]
    return state


def read_everything(srv: ServerProcess, objects: range) -> list[str]:
    """Whole and ranged reads of `objects`, a client for each, all at once; what went wrong."""
    failures: list[str] = []

    def one(n: int) -> None:
        for headers, start, status in (({}, 0, 200), ({"Range": "bytes=1000000-"}, 10**6, 206)):
            r = srv.get(f"/o{n}.bin", headers)
            if (r.status, r.whole, r.body) != (status, True, data(n)[start:]):
                said = r.body[:200] if r.status >= 400 else b""
                failures.append(f"o{n} from {start}: {r.status}, {len(r.body)} bytes {said!r}")

    threads = [threading.Thread(target=one, args=(n,)) for n in objects]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return failures


def fill_up(directory: Path, leave: int) -> Path:
    """A ballast file that leaves about `leave` bytes free on the filesystem."""
    ballast = directory / "ballast"
    free = shutil.disk_usage(directory).free
    with open(ballast, "wb") as handle:
        handle.write(bytes(max(0, free - leave)))
    return ballast


def start(gateway: Gateway, cache: Path) -> ServerProcess:
    gateway.cache = cache
    return gateway.start(
        "--workers", "2", "--cache-min-free", "0", "--cache-readahead", "1",
    )  # fmt: skip


def test_a_full_cache_disk_answers_from_the_store_then_caches_again(
    gateway: Gateway, tmpfs: Path
) -> None:
    srv = start(gateway, tmpfs)
    assert read_everything(srv, range(1)) == []  # o0 cached while there is room
    # Room for a new entry's small files, not for a block: the first fill fails
    # mid-answer (the rest of that answer streams from the store), later ones at open.
    ballast = fill_up(tmpfs, leave=64 * 1024)
    assert read_everything(srv, range(8)) == [], srv.log_text()[-5000:]
    assert read_everything(srv, range(8)) == []
    assert filler_health(tmpfs).startswith(NO_SPACE + " since ")
    assert srv.log_text().count(NO_SPACE) == 1
    assert "Traceback" not in srv.log_text()

    ballast.unlink()
    assert wait_until(lambda: filler_health(tmpfs) == "ok", timeout=10)
    assert srv.log_text().count(CLEARED) == 1
    assert read_everything(srv, range(5, 6)) == []
    gateway.proxy.reset_counters()
    assert read_everything(srv, range(5, 6)) == []
    assert gateway.proxy.count("GET") == 0  # o5 came from the cache


def test_a_read_only_cache_disk_answers_from_the_store_then_caches_again(
    gateway: Gateway, tmpfs: Path
) -> None:
    srv = start(gateway, tmpfs)
    assert read_everything(srv, range(1)) == []
    try:
        # Refused while a file is open for writing: the filler closes idle entries
        # at its next eviction run (every 5 s).
        assert wait_until(lambda: remount(tmpfs, "ro"), timeout=15)
        assert read_everything(srv, range(8)) == []  # o0 from the cache, the rest the store
        assert read_everything(srv, range(8)) == []
        assert filler_health(tmpfs).startswith(READ_ONLY + " since ")
        assert srv.log_text().count(READ_ONLY) == 1
    finally:
        assert remount(tmpfs, "rw")
    assert wait_until(lambda: filler_health(tmpfs) == "ok", timeout=10)
    assert srv.log_text().count(CLEARED) == 1
    assert read_everything(srv, range(3, 4)) == []
    gateway.proxy.reset_counters()
    assert read_everything(srv, range(3, 4)) == []
    assert gateway.proxy.count("GET") == 0
    assert "Traceback" not in srv.log_text()


def test_a_cache_directory_that_vanishes_answers_from_the_store(
    gateway: Gateway, tmp_path: Path
) -> None:
    cache = tmp_path / "vanishing"
    srv = start(gateway, cache)
    assert read_everything(srv, range(2)) == []
    assert len(entry_dirs(cache)) == 2
    shutil.rmtree(cache)
    assert read_everything(srv, range(8)) == []  # o0 and o1 too: their entries are gone
    # The filler notices at its next eviction run (every 5 s) and says so once.
    assert wait_until(lambda: GONE in srv.log_text(), timeout=15)
    assert read_everything(srv, range(8)) == []
    assert srv.log_text().count(GONE) == 1
    assert not cache.exists()  # not made again: it may have been an unmounted disk
    assert "Traceback" not in srv.log_text()
