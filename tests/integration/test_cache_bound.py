"""--cache-max-size is a bound: many clients reading more than the cache may hold, at once.

A sampler walks the cache directory the whole time and adds up what its files
take on disk (st_blocks * 512); it must never see more than the limit plus
the slack decisions/0018 documents. Every answer is compared with the object,
byte for byte: what the cache cannot hold beside the entries in use is
streamed from the store.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faultproxy import FaultProxy
from tests.integration.test_cache_gateway import MIB, Gateway
from tests.s3server import MotoServer
from tests.serverproc import CI, pattern

LIMIT = 8 * MIB
# Filesystem bookkeeping the filler cannot charge ahead (decisions/0018): extent
# blocks of a fragmented data file. Entry files and directories are charged.
SLACK = 64 * 1024
SIZES = (2 * MIB + 777, 3 * MIB - 5, MIB + 1, 4 * MIB)


def allocated(root: Path) -> int:
    """Bytes the files under `root` take on disk (st_blocks * 512); gone files count 0.

    Each file is counted once, by its inode: the walk is not atomic, and an entry
    renamed into trash/ while it runs (eviction parks an entry there, then deletes
    it) would otherwise be met under both names and counted twice.
    """
    seen: dict[tuple[int, int], int] = {}
    for directory, _, names in os.walk(root):
        for name in names:
            try:
                st = os.lstat(os.path.join(directory, name))
            except FileNotFoundError:
                continue
            seen[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    return sum(seen.values())


class Sampler(threading.Thread):
    """Measures the cache directory over and over until stopped; keeps the largest."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.largest = 0
        self.samples = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.largest = max(self.largest, allocated(self.root))
            self.samples += 1

    def stop(self) -> None:
        self.done.set()
        self.join(30)


@pytest.fixture
def gateway(moto_server: MotoServer, fault_proxy: FaultProxy, tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(moto_server, fault_proxy, tmp_path)
    yield gw
    gw.stop()


def test_concurrent_readers_of_several_times_the_limit_never_pass_it(gateway: Gateway) -> None:
    count = 16
    objects = {f"o{n}.bin": pattern(SIZES[n % len(SIZES)], 1000 * n) for n in range(count)}
    for key, data in objects.items():
        gateway.put(key, data)
    assert sum(map(len, objects.values())) >= 4 * LIMIT
    srv = gateway.start(
        "--workers", "2", "--cache-max-size", str(LIMIT), "--cache-min-free", "0",
        "--cache-readahead", "2",
    )  # fmt: skip
    sampler = Sampler(gateway.cache)
    sampler.start()
    failures: list[str] = []

    def reader(keys: list[str]) -> None:
        for key in keys:
            data = objects[key]
            r = srv.get("/" + key)
            if (r.status, r.whole, r.body) != (200, True, data):
                failures.append(f"{key}: {r.status}, {len(r.body)} of {len(data)} bytes")
            start = len(data) // 3
            r = srv.get("/" + key, {"Range": f"bytes={start}-"})
            if (r.status, r.whole, r.body) != (206, True, data[start:]):
                failures.append(f"{key} from {start}: {r.status}, {len(r.body)} bytes")

    keys = list(objects)
    # Each reader goes through every object, from its own starting point: distinct
    # objects at once, and each object again while others are being filled.
    readers, each = (6, 4) if CI else (8, 6)
    threads = [
        threading.Thread(target=reader, args=((keys[2 * n :] + keys[: 2 * n])[:each],))
        for n in range(readers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    sampler.stop()
    assert not failures, failures
    assert sampler.samples > 10
    assert sampler.largest <= LIMIT + SLACK, f"{sampler.largest} bytes held"
    assert allocated(gateway.cache) <= LIMIT + SLACK
    srv.stop()
