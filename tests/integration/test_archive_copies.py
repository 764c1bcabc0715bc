"""Members of .tar.gz archives over real servers: shared copies, the spool limit,
damaged archives, and a read-only SOURCE.

Slow readers (tests/slowclient.py) keep transfers running while the spool
is counted: its files, their allocated bytes, and the worker's descriptors
onto them (/proc/<worker>/fd). Everything served is compared byte for byte
with pattern().
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.app.spool import LOCK_NAME, PREFIX
from tests.mounts import tmpfs
from tests.serverproc import ServerProcess, Servers, pattern, wait_until
from tests.slowclient import SlowDownload

BIG = 16 * 1024 * 1024  # far more than the socket buffers of a slow reader hold
MTIME = 1_700_000_000


def build(path: Path, members: dict[str, bytes], *, level: int = 6) -> bytes:
    """A .tar.gz of `members`; returns the tar stream (before compression)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), MTIME
            tar.addfile(info, io.BytesIO(data))
    blob = out.getvalue()
    path.write_bytes(_gzip(blob, level))
    return blob


def _gzip(blob: bytes, level: int) -> bytes:
    import gzip

    return gzip.compress(blob, compresslevel=level, mtime=0)


def spool_files(spool: Path) -> list[Path]:
    if not spool.is_dir():
        return []
    return sorted(p for p in spool.iterdir() if p.name.startswith(PREFIX))


def allocated(files: list[Path]) -> int:
    total = 0
    for path in files:
        try:
            total += path.stat().st_blocks * 512
        except FileNotFoundError:
            continue
    return total


def descriptors_into(pid: int, directory: Path) -> set[str]:
    """Distinct files under `directory` the process has open (by /proc/<pid>/fd)."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith(str(directory) + "/") and LOCK_NAME not in target:
            found.add(target)
    return found


class Readers:
    """N slow downloads of one URL, each asking for Connection: close so that it ends."""

    def __init__(self, srv: ServerProcess, url: str, count: int, rate: int) -> None:
        close = {"Connection": "close"}
        self.downloads = [SlowDownload(srv, url, rate=rate, headers=close) for _ in range(count)]
        for download in self.downloads:
            download.start()

    def wait_started(self) -> None:
        for download in self.downloads:
            assert download.started.wait(30)

    def running(self) -> bool:
        return all(download.thread.is_alive() for download in self.downloads)

    def bodies(self) -> list[bytes]:
        for download in self.downloads:
            download.join(120)
        return [download.body() for download in self.downloads]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def serve(ferryman: Servers, root: Path, state: Path, *flags: str) -> ServerProcess:
    return ferryman("--state-dir", str(state), *flags, root=root)


# -- one copy, however many readers -------------------------------------------------------


def test_slow_readers_of_one_member_pin_one_copy(
    ferryman: Servers, tmp_path: Path, state: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    build(root / "big.tgz", {"big.bin": pattern(BIG)}, level=1)
    srv = serve(ferryman, root, state, "--spool-keep", "0")
    (worker,) = srv.child_pids()
    readers = Readers(srv, "/big.tgz/big.bin", count=5, rate=4 * 1024 * 1024)
    readers.wait_started()
    files = spool_files(state / "spool")
    open_copies = descriptors_into(worker, state / "spool")
    assert readers.running(), "the readers must still be reading while the spool is counted"
    assert len(files) == 1, files  # one copy, not one per reader
    assert allocated(files) <= BIG + 1024 * 1024
    assert len(open_copies) == 1, open_copies
    assert readers.bodies() == [pattern(BIG)] * 5
    assert wait_until(lambda: spool_files(state / "spool") == [], timeout=5.0)
    assert wait_until(lambda: descriptors_into(worker, state / "spool") == set(), timeout=5.0)


def test_an_unused_copy_serves_the_next_request_then_goes(
    ferryman: Servers, tmp_path: Path, state: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    build(root / "a.tgz", {"m.bin": pattern(1_000_000)})
    srv = serve(ferryman, root, state, "--spool-keep", "1")
    with srv.connect() as conn:
        first = conn.get("/a.tgz/m.bin")
        kept = spool_files(state / "spool")
        ranged = conn.get("/a.tgz/m.bin", {"Range": "bytes=500000-500099"})
        assert spool_files(state / "spool") == kept  # served from the kept copy
    assert first.body == pattern(1_000_000)
    assert (ranged.status, ranged.body) == (206, pattern(100, 500_000))
    assert len(kept) == 1
    assert wait_until(lambda: spool_files(state / "spool") == [], timeout=10.0)


def test_a_graceful_stop_removes_kept_copies_itself(
    ferryman: Servers, tmp_path: Path, state: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    build(root / "a.tgz", {"m.bin": pattern(5000)})
    srv = serve(ferryman, root, state, "--spool-keep", "1h")
    with srv.connect() as conn:
        assert conn.get("/a.tgz/m.bin").body == pattern(5000)
    assert len(spool_files(state / "spool")) == 1
    assert srv.stop() == 0
    assert spool_files(state / "spool") == []
    assert "left behind" not in srv.log_text()  # the worker removed it, not the arbiter's sweep


# -- the spool limit ------------------------------------------------------------------------


def test_the_spool_limit_answers_503_and_serves_once_room_is_free(
    ferryman: Servers, tmp_path: Path, state: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    build(root / "two.tgz", {"a.bin": pattern(BIG), "b.bin": pattern(BIG, 3)}, level=1)
    srv = serve(ferryman, root, state, "--spool-max-size", "20MiB", "--spool-keep", "0")
    readers = Readers(srv, "/two.tgz/a.bin", count=1, rate=4 * 1024 * 1024)
    readers.wait_started()
    with srv.connect() as conn:
        refused = conn.get("/two.tgz/b.bin")
    assert readers.running()
    assert refused.status == 503, refused.body
    assert json.loads(refused.body)["error"] == "spool_full"
    assert int(refused.header("retry-after") or "0") >= 1
    assert len(spool_files(state / "spool")) == 1  # nothing of b was written
    assert readers.bodies() == [pattern(BIG)]
    assert wait_until(lambda: spool_files(state / "spool") == [], timeout=5.0)
    with srv.connect() as conn:
        served = conn.get("/two.tgz/b.bin")
    assert (served.status, served.body == pattern(BIG, 3)) == (200, True)


def test_a_member_larger_than_the_spool_is_507(
    ferryman: Servers, tmp_path: Path, state: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    build(root / "a.tgz", {"m.bin": pattern(2 * 1024 * 1024)})
    srv = serve(ferryman, root, state, "--spool-max-size", "1MiB")
    with srv.connect() as conn:
        r = conn.get("/a.tgz/m.bin")
    assert (r.status, json.loads(r.body)["error"]) == (507, "member_too_large")
    assert spool_files(state / "spool") == []


# -- damaged archives ------------------------------------------------------------------------


def with_trailer_crc(packed: bytes, crc: int) -> bytes:
    size = struct.unpack("<I", packed[-4:])[0]
    return packed[:-8] + struct.pack("<II", crc, size)


@pytest.mark.parametrize("damage", ["trailer-crc", "stored-byte"])
def test_a_corrupted_archive_is_refused_never_served(
    ferryman: Servers, tmp_path: Path, state: Path, damage: str
) -> None:
    """zlib inflates both, to the wrong bytes in one case: only the trailer tells."""
    root = tmp_path / "root"
    root.mkdir()
    members = {"a.txt": b"the member that will be changed\n", "b.bin": pattern(100_000)}
    blob = build(root / "good.tgz", members, level=0)
    packed = (root / "good.tgz").read_bytes()
    if damage == "trailer-crc":
        bad = with_trailer_crc(packed, struct.unpack("<I", packed[-8:-4])[0] ^ 0xFFFF)
    else:
        at = packed.index(b"will be changed")
        bad = packed[:at] + b"W" + packed[at + 1 :]  # stored block: inflates, wrongly
    assert bad != packed and blob  # the same tar, its bytes or trailer changed
    (root / "bad.tgz").write_bytes(bad)
    srv = serve(ferryman, root, state, "--spool-keep", "0")
    with srv.connect() as conn:
        good = conn.get("/good.tgz/a.txt")
        answers = [
            conn.get("/bad.tgz/a.txt"),
            conn.get("/bad.tgz/b.bin"),
            conn.get("/bad.tgz/b.bin", {"Range": "bytes=0-99"}),
            conn.request("HEAD", "/bad.tgz/a.txt"),
            conn.get("/bad.tgz/", {"Accept": "application/json"}),
        ]
    assert (good.status, good.body) == (200, members["a.txt"])
    for r in answers:
        assert r.status == 500, r.body
        assert r.header("content-type") == "application/json"
        if r.body:
            assert json.loads(r.body)["error"] == "bad_archive"
        assert b"member that" not in r.body and b"<000" not in r.body
    assert wait_until(lambda: spool_files(state / "spool") == [], timeout=5.0)  # good's copy
    assert wait_until(lambda: "archive damaged" in srv.log_text(), timeout=2.0)
    assert srv.log_text().count("archive damaged") == 1  # once per archive, not per request


# -- a read-only SOURCE ----------------------------------------------------------------------


@pytest.fixture
def read_only_source(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs holding one .tar.gz, remounted read-only (root is refused writes there too)."""

    def fill(mount: Path) -> None:
        build(mount / "rel.tgz", {"docs/a.txt": b"read-only\n", "p.bin": pattern(3_000_000)})

    with tmpfs(tmp_path / "ro", "64m", fill, read_only=True) as mount:
        yield mount


def test_a_read_only_source_serves_members_from_a_per_user_state_directory(
    ferryman: Servers, read_only_source: Path, tmp_path: Path
) -> None:
    xdg = tmp_path / "xdg"
    srv = ferryman(root=read_only_source, env={"XDG_STATE_HOME": str(xdg)})
    digest = hashlib.sha256(str(read_only_source).encode()).hexdigest()[:8]
    readable = str(read_only_source).strip("/").replace("/", "_").replace("-", "-")
    expected = xdg / "ferryman" / f"{readable}-{digest}"
    with srv.connect() as conn:
        small = conn.get("/rel.tgz/docs/a.txt")
        whole = conn.get("/rel.tgz/p.bin")
        ranged = conn.get("/rel.tgz/p.bin", {"Range": "bytes=2999990-"})
    assert (small.status, small.body) == (200, b"read-only\n")
    assert whole.status == 200 and whole.body == pattern(3_000_000)
    assert (ranged.status, ranged.body) == (206, pattern(10, 2_999_990))
    assert f"state directory {expected} (per user: SOURCE is not writable)" in srv.log_text()
    assert (expected / "spool").is_dir()
    assert not (read_only_source / ".ferryman").exists()
