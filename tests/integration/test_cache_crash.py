"""The cache's storage under real crashes, real locks across processes and a real full disk.

A writer process stands in for the filler: it writes, rewrites and clears
blocks and replaces the entry with new versions, in a loop, and is SIGKILLed
at random moments, many times. After every kill, every block the map marks
present must read back exactly what was meant for that version and position
(block contents are self-identifying: records `G<gen>@<offset>`), first as a
worker would see the entry before the filler restarts, then after recovery.
"""

from __future__ import annotations

import errno
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.cache.crypto import BadBlock, BlockCipher, load_or_create_key
from ferryman.cache.entry import CacheDir, EntryMeta
from ferryman.cache.eviction import Evictor
from tests.mounts import tmpfs as mounted
from tests.serverproc import CI

KILLS = 30 if CI else (500 if os.environ.get("FERRYMAN_SLOW") == "1" else 100)
BLOCK = 4096
KEY = "private-plans/ferryman-secret-object.bin"
SOURCE = "s3://crash-bucket"
ETAG_MARK = "etag-marker-7f3a"

WRITER = r"""
import os, random, signal, sys
from pathlib import Path
from ferryman.cache.crypto import BlockCipher, load_or_create_key
from ferryman.cache.entry import CacheDir, EntryMeta

BLOCK = 4096
cache_path, key_file, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
KEY, SOURCE, ETAG_MARK = sys.argv[4], sys.argv[5], sys.argv[6]

def content(gen, offset, length):
    first = offset - offset % 16
    offsets = range(first, offset + length + 16, 16)
    records = b"".join(b"G%03d@%010d\n" % (gen % 1000, o) for o in offsets)
    return records[offset - first : offset - first + length]

def meta_for(gen):
    size = 12 * BLOCK + (gen * 337) % BLOCK + 1
    return EntryMeta(KEY, size, '"g%d-%s"' % (gen, ETAG_MARK), gen, None, None, BLOCK)

# With a death rate, the process also kills itself right before or after a file
# system call now and then, so that every gap between two calls gets its turn.
death_rate = float(sys.argv[7])
deaths = random.Random(seed + 1)

def hazardous(call):
    def wrapper(*args, **kwargs):
        if deaths.random() < death_rate:
            os.kill(os.getpid(), signal.SIGKILL)
        result = call(*args, **kwargs)
        if deaths.random() < death_rate:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return wrapper

cipher = BlockCipher(load_or_create_key(Path(key_file))) if key_file != "-" else None
cache = CacheDir(Path(cache_path), namespace=SOURCE, cipher=cipher)
cache.recover()  # as the filler does at start
writer = cache.open_writer(KEY)
gen = int(writer.meta.etag[2:].split("-")[0]) if writer else 0
rng = random.Random(seed)
print("ready", flush=True)
for name in ("pwrite", "write", "fdatasync", "fsync", "ftruncate", "rename", "mkdir", "utime"):
    setattr(os, name, hazardous(getattr(os, name)))
while True:
    roll = rng.random()
    if writer is None or roll < 0.04:
        if writer is not None:
            writer.close()
        gen += 1
        writer = cache.create(meta_for(gen))
        continue
    meta = writer.meta
    index = rng.randrange(meta.block_count())
    offset, length = meta.block_span(index).start, meta.block_span(index).length
    if roll < 0.12 and writer.present[index]:
        writer.clear_block(index)
    elif roll < 0.16:
        writer.mark_checked()
        writer.touch_used()
    else:
        writer.write_block(index, content(gen, offset, length))
"""


def content(gen: int, offset: int, length: int) -> bytes:
    """What the writer means for bytes [offset, offset+length) of version `gen`."""
    first = offset - offset % 16
    records = b"".join(
        b"G%03d@%010d\n" % (gen % 1000, o) for o in range(first, offset + length + 16, 16)
    )
    return records[offset - first : offset - first + length]


def generation(meta: EntryMeta) -> int:
    return int(meta.etag[2:].split("-")[0])


def wait_for_line(proc: subprocess.Popen[bytes], deadline: float) -> bytes:
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
        if ready:
            return proc.stdout.readline()
    raise AssertionError("the writer process did not start")


def check_entry(cache: CacheDir) -> int:
    """Every present block reads back as meant; returns how many were checked."""
    reader = cache.open_reader(KEY)
    if reader is None:
        return 0  # killed between dropping the old version and renaming in the new one
    with reader:
        meta = reader.meta
        gen = generation(meta)
        assert meta.size == 12 * BLOCK + (gen * 337) % BLOCK + 1
        checked = 0
        for index in range(meta.block_count()):
            if not reader.present(range(index, index + 1)):
                continue
            span = meta.block_span(index)
            expected = content(gen, span.start, span.length)
            assert reader.read_block(index) == expected, f"block {index} of version {gen}"
            if not reader.encrypted:
                region = reader.region(span)
                assert os.pread(region.fd, region.count, region.offset) == expected
            checked += 1
        return checked


@pytest.fixture(params=["plain", "encrypted"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def open_cache(root: Path, mode: str) -> CacheDir:
    cipher = BlockCipher(load_or_create_key(root / "cache.key")) if mode == "encrypted" else None
    return CacheDir(root / "cache", namespace=SOURCE, cipher=cipher)


def crash_many_times(root: Path, mode: str, kills: int) -> tuple[int, int]:
    key_file = str(root / "cache.key") if mode == "encrypted" else "-"
    rng = random.Random()
    checked = versions = 0
    for kill in range(kills):
        # one round in four is killed from outside at a random time, the others at a
        # random file system call
        death_rate = 0.0 if kill % 4 == 0 else 0.02
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                str(root / "cache"),
                key_file,
                str(rng.randrange(1 << 30)),
                KEY,
                SOURCE,
                ETAG_MARK,
                str(death_rate),
            ],
            stdout=subprocess.PIPE,
        )
        try:
            assert wait_for_line(proc, time.monotonic() + 30) == b"ready\n"
            # the moment of the kill is what varies; nothing is being waited for
            time.sleep(rng.uniform(0.0, 0.04))
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL, f"kill {kill}"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
        cache = open_cache(root, mode)
        checked += check_entry(cache)  # as a worker sees it, before the filler restarts
        cache.recover()
        assert list(cache.tmp_dir.iterdir()) == [] and list(cache.trash_dir.iterdir()) == []
        checked += check_entry(cache)
        reader = cache.open_reader(KEY)
        if reader is not None:
            versions = max(versions, generation(reader.meta))
            reader.close()
    return checked, versions


def test_sigkill_never_leaves_a_wrong_block(tmp_path: Path, mode: str) -> None:
    checked, versions = crash_many_times(tmp_path, mode, KILLS)
    assert checked > KILLS  # the kills left plenty of present blocks to check
    assert versions >= 1

    cache = open_cache(tmp_path, mode)
    if mode == "encrypted":
        assert_flipped_byte_is_bad(cache)


def assert_flipped_byte_is_bad(cache: CacheDir) -> None:
    with cache.create(EntryMeta(KEY, 3 * BLOCK, '"flip"', 0, None, None, BLOCK)) as writer:
        for index in range(3):
            writer.write_block(index, content(0, index * BLOCK, BLOCK))
    data = cache.entry_path(KEY) / "data"
    with open(data, "r+b") as f:
        f.seek(BLOCK + 28 + 200)  # inside block 1's ciphertext
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))
    reader = cache.open_reader(KEY)
    assert reader is not None
    with reader:
        assert reader.read_block(0) == content(0, 0, BLOCK)
        with pytest.raises(BadBlock):
            reader.read_block(1)
        assert reader.read_block(2) == content(0, 2 * BLOCK, BLOCK)


def everything_under(root: Path) -> Iterator[bytes]:
    """Every file's bytes and every name under `root`."""
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            yield name.encode()
        for name in files:
            yield (Path(directory) / name).read_bytes()


@pytest.mark.parametrize("encrypted", [True, False])
def test_no_plaintext_in_an_encrypted_cache(tmp_path: Path, encrypted: bool) -> None:
    """The same search finds everything in a plain cache, which shows that it can."""
    mode = "encrypted" if encrypted else "plain"
    crash_many_times(tmp_path, mode, 3)
    cache = open_cache(tmp_path, mode)
    cache.recover()
    reader = cache.open_reader(KEY)
    if reader is None or reader.missing(range(1)) != []:
        # make sure there is a present block and a complete entry to look for
        with cache.create(EntryMeta(KEY, BLOCK, f'"g1-{ETAG_MARK}"', 1, None, None, BLOCK)) as w:
            w.write_block(0, content(1, 0, BLOCK))
    if reader is not None:
        reader.close()
    secrets = [KEY.encode(), b"ferryman-secret", ETAG_MARK.encode(), b"@0000000000\n"]
    found = {s for blob in everything_under(cache.path) for s in secrets if s in blob}
    if encrypted:
        assert found == set()
    else:
        assert found == set(secrets)


# -- locks across processes ---------------------------------------------------------

HOLDER = r"""
import sys
from pathlib import Path
from ferryman.cache.entry import CacheDir
cache = CacheDir(Path(sys.argv[1]), namespace=sys.argv[2], cipher=None)
reader = cache.open_reader(sys.argv[3])
print("held" if reader is not None and reader.acquire() else "missing", flush=True)
sys.stdin.readline()
reader.release()
print("released", flush=True)
sys.stdin.readline()
"""


def test_eviction_spares_an_entry_another_process_holds(tmp_path: Path) -> None:
    cache = CacheDir(tmp_path / "cache", namespace=SOURCE, cipher=None)
    for key in ("held", "free"):
        with cache.create(EntryMeta(key, BLOCK, '"e"', 0, None, None, BLOCK)) as writer:
            writer.write_block(0, content(0, 0, BLOCK))
    evictor = Evictor(cache, max_size=0, max_age=3600, min_free=0)
    for how in ("release", "kill"):
        if not cache.entry_path("held").exists():
            with cache.create(EntryMeta("held", BLOCK, '"e"', 0, None, None, BLOCK)) as w:
                w.write_block(0, content(0, 0, BLOCK))
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(cache.path), SOURCE, "held"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert holder.stdin is not None and holder.stdout is not None
        try:
            assert wait_for_line(holder, time.monotonic() + 30) == b"held\n"
            report = evictor.run()
            assert cache.entry_path("held").exists()
            assert not cache.entry_path("free").exists()
            assert report.evicted == (1 if how == "release" else 0)
            if how == "release":
                holder.stdin.write(b"go\n")
                holder.stdin.flush()
                assert wait_for_line(holder, time.monotonic() + 30) == b"released\n"
            else:
                holder.kill()  # the kernel drops a dead process's locks
                holder.wait(timeout=30)
            assert evictor.run().evicted == 1
            assert not cache.entry_path("held").exists()
        finally:
            holder.stdin.close()
            holder.stdout.close()
            if holder.poll() is None:
                holder.kill()
            holder.wait(timeout=30)


# -- a real, small filesystem -----------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs (needs root; skipped where mounting is not allowed)."""
    with mounted(tmp_path / "small", "8m") as mount_point:
        yield mount_point


MIB = 1 << 20


def test_full_disk_fails_the_write_and_leaves_the_block_absent(tmpfs: Path) -> None:
    cache = CacheDir(tmpfs / "cache", namespace=SOURCE, cipher=None)
    meta = EntryMeta(KEY, 16 * MIB, '"big"', 0, None, None, MIB)
    with cache.create(meta) as writer:
        written = 0
        with pytest.raises(OSError) as failure:
            for index in range(16):
                writer.write_block(index, content(0, index * MIB, MIB))
                written += 1
        assert failure.value.errno == errno.ENOSPC
        assert 0 < written < 16
        assert writer.present == bytearray([1] * written + [0] * (16 - written))
    reader = cache.open_reader(KEY)
    assert reader is not None
    with reader:
        assert reader.missing(range(16)) == list(range(written, 16))
        assert reader.read_block(written - 1) == content(0, (written - 1) * MIB, MIB)


def test_eviction_restores_free_space_on_a_real_filesystem(tmpfs: Path) -> None:
    cache = CacheDir(tmpfs / "cache", namespace=SOURCE, cipher=None)
    now = time.time()
    keys = [f"obj{i}" for i in range(6)]
    for age, key in enumerate(reversed(keys)):  # obj0 is the least recently used
        meta = EntryMeta(key, MIB, '"e"', 0, None, None, MIB)
        with cache.create(meta) as writer:
            writer.write_block(0, content(0, 0, MIB))
        os.utime(cache.entry_path(key) / "used", (now - age, now - age))
    st = os.statvfs(tmpfs)
    free = st.f_bavail * st.f_frsize
    each = max(u.size_bytes for u in cache.entries())
    assert free < 3 * MIB and each > MIB  # 6 MiB of 8 are taken
    min_free = free + each + each // 2  # two entries must go
    report = Evictor(cache, max_size=1 << 40, max_age=3600, min_free=min_free).run()
    st = os.statvfs(tmpfs)
    assert st.f_bavail * st.f_frsize >= min_free
    assert report.evicted == 2
    assert [k for k in keys if cache.entry_path(k).exists()] == keys[2:]
