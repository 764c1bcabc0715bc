"""The block cache end to end: ferryman (arbiter, filler, workers) in front of moto.

Every upstream request goes through tests/faultproxy.py, which counts GETs
and the body bytes they carry and injects faults. Objects are pattern bytes
(each names its own offset); every body served is compared with the object.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faultproxy import FaultProxy, Rule
from tests.mounts import tmpfs
from tests.rawhttp import RawResponse
from tests.s3server import MotoServer, s3_env
from tests.serverproc import CI, ServerProcess, pattern, wait_until
from tests.writing import put, write_flags

MIB = 1024 * 1024
BIG = 8 * MIB + 12345  # nine blocks of 1 MiB, the last one short
RANGES_IN = re.compile(r"bytes=(\d+)-(\d+)")


class Gateway:
    """A bucket, the proxy in front of it, and ferryman servers with a cache over both."""

    def __init__(self, moto: MotoServer, proxy: FaultProxy, base: Path) -> None:
        self.moto = moto
        self.proxy = proxy
        self.bucket = moto.create_bucket()
        self.base = base
        self.cache = base / "cache"
        self.servers: list[ServerProcess] = []

    def put(self, key: str, data: bytes) -> None:
        self.moto.put_object(self.bucket, key, data)

    def start(self, *flags: str) -> ServerProcess:
        srv = ServerProcess(
            f"s3://{self.bucket}",
            "--state-dir", str(self.base / "state"), "--cache-dir", str(self.cache), *flags,
            env=s3_env(self.proxy.url),
        )  # fmt: skip
        self.servers.append(srv)
        return srv

    def fetched_ranges(self) -> list[tuple[int, int]]:
        """(first, last) byte of every ranged GET that reached the store, in order."""
        found = []
        for request in self.proxy.log:
            match = RANGES_IN.search(request.by_name.get("range", ""))
            if request.method == "GET" and match:
                found.append((int(match.group(1)), int(match.group(2))))
        return found

    def fetched_blocks(self) -> list[int]:
        """Each block index as often as the store was asked for it."""
        blocks: list[int] = []
        for first, last in self.fetched_ranges():
            blocks.extend(range(first // MIB, last // MIB + 1))
        return blocks

    def stop(self) -> None:
        for srv in self.servers:
            srv.stop()


@pytest.fixture
def gateway(moto_server: MotoServer, fault_proxy: FaultProxy, tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(moto_server, fault_proxy, tmp_path)
    gw.put("big.bin", pattern(BIG))
    yield gw
    gw.stop()


def assert_serves_whole(srv: ServerProcess, key: str, data: bytes) -> None:
    r = srv.get("/" + key)
    assert r.status == 200 and r.whole
    assert r.body == data


# -- single flight and time to first byte ----------------------------------------------------


def test_fifty_cold_requests_fetch_each_block_once(gateway: Gateway) -> None:
    srv = gateway.start("--workers", "2", "--cache-readahead", "0")
    start, end = 2 * MIB + 100, 5 * MIB - 100  # blocks 2, 3 and 4
    results: list[tuple[int, bytes]] = []

    def one() -> None:
        r = srv.get("/big.bin", {"Range": f"bytes={start}-{end}"})
        results.append((r.status, r.body))

    threads = [threading.Thread(target=one) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 50
    for status, body in results:
        assert status == 206
        assert body == pattern(end - start + 1, start)
    assert sorted(gateway.fetched_blocks()) == [2, 3, 4]
    assert gateway.proxy.count("HEAD") == 1  # one filler asked once for the version


def test_a_cold_range_at_the_end_waits_for_one_block_only(gateway: Gateway) -> None:
    """The last MiB of the object: its first byte comes after one block, not eight."""
    srv = gateway.start("--cache-readahead", "0")
    last_block = BIG // MIB
    r = srv.get("/big.bin", {"Range": "bytes=-1048576"})
    assert r.status == 206 and r.whole
    assert r.body == pattern(MIB, BIG - MIB)
    # The last MiB spans the last two blocks; nothing before them was fetched, so
    # nothing before them was waited for. (That a block is sent while the rest of
    # its run is still arriving is shown in tests/unit/test_filler.py; the time
    # to first byte at 0, 50% and 99% is measured by bench/cache_bench.py.)
    assert sorted(set(gateway.fetched_blocks())) == [last_block - 1, last_block]
    assert gateway.fetched_ranges()[0][0] >= (last_block - 1) * MIB


def test_sequential_readers_get_read_ahead(gateway: Gateway) -> None:
    srv = gateway.start("--cache-readahead", "3")
    r = srv.get("/big.bin", {"Range": "bytes=0-99"})
    assert r.status == 206 and r.body == pattern(100)
    assert wait_until(lambda: set(gateway.fetched_blocks()) >= {0, 1, 2, 3}, timeout=10)
    assert max(gateway.fetched_blocks()) <= 3


# -- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Rule(method="GET", times=None, reset_after=4000),
     Rule(method="GET", times=None, truncate_after=4000)],
    ids=["reset_after", "truncate_after"],
)  # fmt: skip
def test_cut_fetches_cache_nothing_wrong(gateway: Gateway, fault: Rule) -> None:
    """Every fetch of block 1 onward is cut inside its first block: no retry gets further."""
    srv = gateway.start("--cache-readahead", "0")
    r = srv.get("/big.bin", {"Range": "bytes=0-99"})  # block 0, whole
    assert (r.status, r.body) == (206, pattern(100))
    gateway.proxy.add(fault)
    r = srv.get("/big.bin")
    assert r.status == 200
    assert not r.whole  # the client sees the transfer cut ...
    assert len(r.body) >= MIB  # ... after the block that was there ...
    assert r.body == pattern(len(r.body))  # ... and never a wrong byte
    gateway.proxy.clear()
    assert_serves_whole(srv, "big.bin", pattern(BIG))  # what was kept is right


def test_a_fetch_cut_after_whole_blocks_keeps_them(gateway: Gateway) -> None:
    """A response cut mid-run still delivers its whole blocks: retries make progress."""
    srv = gateway.start("--cache-readahead", "0")
    gateway.proxy.add(Rule(method="GET", times=3, truncate_after=MIB + 4000))
    r = srv.get("/big.bin")
    assert r.status == 200
    assert r.body == pattern(len(r.body))
    gateway.proxy.clear()
    assert_serves_whole(srv, "big.bin", pattern(BIG))
    assert gateway.fetched_blocks().count(0) == 1  # block 0 arrived whole the first time


def test_throttled_store_is_503_with_retry_after(gateway: Gateway) -> None:
    srv = gateway.start()
    gateway.proxy.add(Rule(method="HEAD", slow_down=True, retry_after=4))
    r = srv.get("/big.bin")
    assert r.status == 503 and r.header("retry-after") == "4"
    assert_serves_whole(srv, "big.bin", pattern(BIG))


def test_concurrent_misses_are_each_a_404_and_break_nothing(gateway: Gateway) -> None:
    """Clients asking for missing keys at once: each miss waits on the store while
    others are handled (the compiled path once corrupted its exception state here,
    tests/unit/test_compiled_awaits.py). Every answer is a 404, nothing is logged
    as an error, the worker lives, and the object beside them is served whole."""
    srv = gateway.start("--workers", "1")
    workers = sorted(srv.child_pids())
    statuses: list[int] = []

    def ask(client: int) -> None:
        for i in range(20):
            statuses.append(srv.get(f"/missing-{(client + i) % 3}.txt").status)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [404] * 240
    assert_serves_whole(srv, "big.bin", pattern(BIG))
    assert sorted(srv.child_pids()) == workers
    assert " ERROR " not in srv.log_text() and "SIGSEGV" not in srv.log_text()


def _filler_pid(srv: ServerProcess) -> int:
    found = re.findall(r"started cache filler \(pid (\d+)\)", srv.log_text())
    assert found, srv.log_text()
    return int(found[-1])


def fetch_after(gateway: Gateway, count: int) -> Callable[[], bool]:
    return lambda: len(gateway.fetched_ranges()) > count


def logged_twice(srv: ServerProcess, text: str) -> Callable[[], bool]:
    return lambda: srv.log_text().count(text) >= 2


def _parent_of(stat: Path) -> int | None:
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1])


def _kill_all(srv: ServerProcess) -> None:
    """SIGKILL the arbiter and every process it started (workers, filler)."""
    children = [
        stat.parent.name
        for stat in Path("/proc").glob("[0-9]*/stat")
        if _parent_of(stat) == srv.proc.pid
    ]
    srv.proc.kill()
    for pid in children:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    srv.proc.wait(10)


def test_sigkill_during_fills_then_every_byte_served_is_right(gateway: Gateway) -> None:
    """Each round kills mid-fill (the filler alone, or everything) on a cold object."""
    rounds = 4 if CI else 8
    objects = {f"r{n}.bin": pattern(BIG, 1000 * n) for n in range(rounds)}
    for key, data in objects.items():
        gateway.put(key, data)
    for round_number, key in enumerate(objects):
        srv = gateway.start("--cache-readahead", "2", "--workers", "2", "--grace-period", "2")
        gateway.proxy.clear()
        gateway.proxy.add(Rule(method="GET", latency=0.05, times=None))  # fills take a while
        served: list[RawResponse] = []
        reader = threading.Thread(
            target=lambda: served.append(srv.get("/" + key)),  # noqa: B023 (joined below)
            daemon=True,
        )
        reader.start()
        assert wait_until(fetch_after(gateway, len(gateway.fetched_ranges())), timeout=10)
        time.sleep(0.04 * (round_number % 4))  # kill at different points of a fill
        if round_number % 2:
            os.kill(_filler_pid(srv), signal.SIGKILL)  # the filler alone: it is restarted
            reader.join(10)  # its transfer was cut: it waited on blocks of the dead filler
            gateway.proxy.clear()
            assert_serves_whole(srv, key, objects[key])  # waits for the new filler
            assert logged_twice(srv, "filler ready")()
            srv.stop()
        else:
            _kill_all(srv)  # the whole server, then a new one on the same cache directory
        reader.join(10)
        for r in served:  # what the cut transfer sent before the kill
            assert r.status == 200 and r.body == objects[key][: len(r.body)]
    gateway.proxy.clear()
    srv = gateway.start()
    for key, data in objects.items():
        assert_serves_whole(srv, key, data)
        for start in (0, MIB - 1, 3 * MIB + 7, BIG - 10):
            r = srv.get("/" + key, {"Range": f"bytes={start}-{start + 99}"})
            assert (r.status, r.body) == (206, data[start : start + 100])


def test_a_request_queued_by_the_killed_filler_waits_for_the_new_one(gateway: Gateway) -> None:
    """A killed filler's listening socket can outlive its connections for a moment and queue
    a worker's connection that nobody will answer; the kernel then resets it. Stopped with
    SIGSTOP, the filler holds that moment open: the request must not be cut for it."""
    srv = gateway.start("--workers", "1", "--cache-readahead", "0")
    first = srv.get("/big.bin", {"Range": "bytes=0-99"})  # block 0, version checked
    assert (first.status, first.body) == (206, pattern(100))
    found = re.search(r"filler ready: \S+ at (\S+), ", srv.log_text())
    assert found, srv.log_text()
    filler = _filler_pid(srv)
    os.kill(filler, signal.SIGSTOP)
    served: list[RawResponse] = []
    reader = threading.Thread(target=lambda: served.append(srv.get("/big.bin")), daemon=True)
    try:
        reader.start()  # warm: block 0 from the disk, then the filler is asked for block 1
        assert wait_until(lambda: _queued_connections(found.group(1)) > 0, timeout=10)
    finally:
        os.kill(filler, signal.SIGKILL)  # the queued connection is reset
    reader.join(30)
    answer = served[0]
    assert answer.status == 200 and answer.whole and answer.body == pattern(BIG)
    assert logged_twice(srv, "filler ready")()


def _queued_connections(path: str) -> int:
    """Connections waiting in the queue of the listening Unix socket at `path` (state 02,
    connecting, in /proc/net/unix: not yet accepted)."""
    with open("/proc/net/unix") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(1 for row in rows if len(row) == 8 and row[7] == path and row[5] == "02")


def test_sigterm_drains_a_cold_transfer_before_the_filler_stops(gateway: Gateway) -> None:
    srv = gateway.start("--cache-readahead", "1")
    gateway.proxy.add(Rule(method="GET", latency=0.2, times=None))  # a fill of ~2 s
    result: list[RawResponse] = []
    reader = threading.Thread(target=lambda: result.append(srv.get("/big.bin")))
    reader.start()
    assert wait_until(fetch_after(gateway, 0), timeout=10)
    srv.signal(signal.SIGTERM)
    reader.join(30)
    [r] = result
    assert r.status == 200 and r.whole and r.body == pattern(BIG)
    assert srv.wait(30) == 0
    log = srv.log_text()
    assert log.index("worker 1 (pid") < log.index("cache filler (pid", log.index("SIGTERM"))


def test_log_reopening_and_rolling_restarts_leave_the_filler_alone(gateway: Gateway) -> None:
    srv = gateway.start("--workers", "2")
    assert_serves_whole(srv, "big.bin", pattern(BIG))
    filler = _filler_pid(srv)
    srv.signal(signal.SIGUSR1)
    srv.signal(signal.SIGHUP)
    assert wait_until(lambda: "rolling restart done" in srv.log_text(), timeout=20)
    assert _filler_pid(srv) == filler and "cache filler" not in _exits(srv)
    assert_serves_whole(srv, "big.bin", pattern(BIG))
    assert srv.log_text().count("filler ready") == 1


def _exits(srv: ServerProcess) -> str:
    return "\n".join(line for line in srv.lines if "killed by" in line or "exited" in line)


# -- versions -----------------------------------------------------------------------------------


def test_an_object_replaced_upstream_is_served_whole_in_its_new_version(gateway: Gateway) -> None:
    srv = gateway.start("--cache-revalidate", "0")
    assert_serves_whole(srv, "big.bin", pattern(BIG))
    first = srv.get("/big.bin", {"Range": "bytes=0-0"})
    new = pattern(3 * MIB + 1, 77)  # other bytes, other size
    gateway.put("big.bin", new)
    r = srv.get("/big.bin")
    assert r.status == 200 and r.whole and r.body == new
    assert r.header("etag") != first.header("etag")
    assert r.header("content-length") == str(len(new))


def test_a_small_object_answered_from_memory_is_never_stale(gateway: Gateway) -> None:
    """Small objects are answered from memory after their first GET (app/bodycache.py;
    that the answer comes from memory is shown in test_cache_warm.py): a write
    through ferryman is served at once all the same, and a new version found
    upstream once revalidated."""
    old, new, newer = pattern(900, 1), pattern(1100, 2), pattern(700, 3)
    gateway.put("small.bin", old)
    srv = gateway.start(*write_flags(gateway.base), "--cache-revalidate", "1h")
    for _ in range(3):
        before = srv.get("/small.bin")
        assert before.status == 200 and before.whole and before.body == old

    assert put(srv, "/small.bin", new).status == 204
    after = srv.get("/small.bin")
    assert after.status == 200 and after.whole and after.body == new
    assert after.header("etag") != before.header("etag")
    assert after.header("content-length") == str(len(new))

    srv.stop()
    srv = gateway.start("--cache-revalidate", "1s")
    for _ in range(2):
        r = srv.get("/small.bin")
        assert r.status == 200 and r.whole and r.body == new
    gateway.put("small.bin", newer)  # behind ferryman's back: seen once revalidated
    time.sleep(1.1)
    r = srv.get("/small.bin")
    assert r.status == 200 and r.whole and r.body == newer


def test_blocks_of_two_versions_are_never_mixed(gateway: Gateway) -> None:
    """Block 0 is cached from v1; the object changes; block 5 would come from v2."""
    srv = gateway.start("--cache-revalidate", "1h", "--cache-readahead", "0")
    first = srv.get("/big.bin", {"Range": "bytes=0-99"})
    assert first.status == 206 and first.body == pattern(100)
    new = pattern(BIG, 5)
    gateway.put("big.bin", new)
    r = srv.get("/big.bin", {"Range": f"bytes={5 * MIB}-{5 * MIB + 99}"})
    # The fetch with If-Match on v1's ETag fails: v1's entry is dropped, nothing of
    # v2 is sent under v1's headers. Either the transfer aborts or v2 is served whole.
    if r.status == 206 and r.whole and r.header("etag") == first.header("etag"):
        pytest.fail("v2 bytes were sent under v1's ETag")
    r = srv.get("/big.bin")
    assert r.status == 200 and r.whole and r.body == new
    assert r.header("etag") != first.header("etag")


# -- eviction -------------------------------------------------------------------------------------


def entry_dirs(cache: Path) -> list[Path]:
    return [p for p in (cache / "entries").glob("*/*") if p.is_dir()]


def in_use(cache: Path) -> bool:
    """Some entry is locked in use, as the evictor sees it (a worker keeps an entry it
    sent from locked for 2 s: cache/client.py LINGER)."""
    for entry in entry_dirs(cache):
        try:
            fd = os.open(entry / "data", os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
    return False


def test_size_limit_evicts_least_recently_used(gateway: Gateway) -> None:
    for name in ("a", "b", "c"):
        gateway.put(f"{name}.bin", pattern(2 * MIB, ord(name)))
    srv = gateway.start("--cache-max-size", "5MiB", "--cache-readahead", "0")
    assert_serves_whole(srv, "a.bin", pattern(2 * MIB, ord("a")))
    assert_serves_whole(srv, "b.bin", pattern(2 * MIB, ord("b")))
    assert wait_until(lambda: not in_use(gateway.cache), timeout=10)  # else c is not cached
    assert_serves_whole(srv, "c.bin", pattern(2 * MIB, ord("c")))  # a must go to make room
    assert wait_until(lambda: len(entry_dirs(gateway.cache)) == 2, timeout=10)
    gateway.proxy.reset_counters()
    assert_serves_whole(srv, "c.bin", pattern(2 * MIB, ord("c")))
    assert gateway.proxy.count("GET") == 0  # c is still cached
    assert_serves_whole(srv, "a.bin", pattern(2 * MIB, ord("a")))
    assert gateway.proxy.count("GET") >= 1  # a was evicted: fetched again


def test_age_limit_evicts_unused_entries(gateway: Gateway) -> None:
    gateway.put("small.bin", pattern(1000))
    srv = gateway.start("--cache-max-age", "1s")
    assert_serves_whole(srv, "small.bin", pattern(1000))
    assert len(entry_dirs(gateway.cache)) == 1
    assert wait_until(lambda: not entry_dirs(gateway.cache), timeout=20)
    assert_serves_whole(srv, "small.bin", pattern(1000))


def test_free_space_floor(gateway: Gateway, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small-fs", "12m") as mount:
        try:
            gateway.cache = mount / "cache"
            for name in ("a", "b", "c"):
                gateway.put(f"{name}.bin", pattern(3 * MIB, ord(name)))
            srv = gateway.start("--cache-min-free", "5MiB", "--cache-readahead", "0")
            for name in ("a", "b", "c"):
                assert wait_until(lambda: not in_use(gateway.cache), timeout=10)
                assert_serves_whole(srv, f"{name}.bin", pattern(3 * MIB, ord(name)))
            assert wait_until(lambda: os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
                              >= 5 * MIB, timeout=10)  # fmt: skip
            assert len(entry_dirs(gateway.cache)) < 3
            srv.stop()
        finally:
            gateway.stop()


# -- encryption -----------------------------------------------------------------------------------


def test_encrypted_cache_holds_no_plaintext_and_catches_a_flipped_byte(gateway: Gateway) -> None:
    data = pattern(3 * MIB)
    gateway.put("secret-name.bin", data)
    srv = gateway.start("--cache-encrypt", "--cache-readahead", "0")
    assert_serves_whole(srv, "secret-name.bin", data)
    etag = srv.get("/secret-name.bin", {"Range": "bytes=0-0"}).header("etag")
    assert etag
    key_file = gateway.base / "state" / "cache.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    etag_bytes = etag.strip('"').encode()
    for path in gateway.cache.rglob("*"):
        assert b"secret-name" not in os.fsencode(path)
        if path.is_file() and path.name != "filler.sock":
            blob = path.read_bytes()
            for needle in (b"secret-name", etag_bytes, data[MIB : MIB + 64], b"<0000000001048576>"):
                assert needle not in blob, (path, needle)
    (entry,) = entry_dirs(gateway.cache)
    with open(entry / "data", "r+b") as handle:  # flip one byte inside block 1
        handle.seek(MIB + 28 + 1000)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    gateway.proxy.reset_counters()
    assert_serves_whole(srv, "secret-name.bin", data)  # caught, fetched again, right
    assert gateway.fetched_blocks() == [1]


# -- counters ------------------------------------------------------------------------------------


def filler_stats(cache: Path) -> dict[str, float]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(cache / "filler.sock"))
        sock.sendall(b'{"op": "stats"}\n')
        line = sock.makefile("rb").readline()
    answer: dict[str, Any] = json.loads(line)
    stats: dict[str, float] = answer["stats"]
    return stats


def test_counters(gateway: Gateway) -> None:
    srv = gateway.start("--cache-readahead", "0")
    gateway.proxy.reset_counters()  # the boot step's look at the bucket went through it too
    assert_serves_whole(srv, "big.bin", pattern(BIG))
    stats = filler_stats(gateway.cache)
    assert stats["fills"] == 9
    assert stats["bytes_fetched"] == BIG == gateway.proxy.bytes_out
    assert stats["misses"] >= 1
