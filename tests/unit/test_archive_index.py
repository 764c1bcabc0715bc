"""Archive indexes, extraction windows, and the spool beneath them.

Archives are built in memory (or in tmp_path) with tarfile; the index must
place every member's data exactly where the bytes are, leave out whatever
may not be served, and stop (not fail) where an archive stops making sense.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import stat
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from ferryman.app import archive_index as archive
from ferryman.app.archive import ArchiveServer
from ferryman.app.archive_index import (
    ArchiveDamaged,
    IndexCache,
    extract_window,
    is_archive_name,
    is_compressed,
    member_etag,
    normalise_member,
    open_positional,
    read_index,
)
from ferryman.app.listing import Entry
from ferryman.app.paths import resolve
from ferryman.app.spool import PREFIX, Spool
from ferryman.errors import HttpError
from ferryman.http.parser import Request
from tests.conftest import pattern

MTIME = 1_700_000_000


def info(
    name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, **attrs: object
) -> tarfile.TarInfo:
    item = tarfile.TarInfo(name)
    item.type, item.size, item.mtime = kind, size, MTIME
    for key, value in attrs.items():
        setattr(item, key, value)
    return item


def make_tar(members: list[tuple[str, bytes]], *, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, data in members:
            tar.addfile(info(name, size=len(data)), io.BytesIO(data))
    return out.getvalue()


def index_of(blob: bytes, *, compressed: bool = False) -> archive.ArchiveIndex:
    raw = gzip.compress(blob, compresslevel=1) if compressed else blob
    return read_index(io.BytesIO(raw), compressed=compressed, size=len(raw), mtime=42)


# -- names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.txt", "a.txt"),
        ("./a/b.txt", "a/b.txt"),
        ("a//b/", "a/b"),
        ("a\\..\\b", "a\\..\\b"),  # a backslash is an ordinary character
        ("/etc/passwd", None),
        ("//x", None),
        ("../evil", None),
        ("a/../b", None),  # refused even where it would stay inside, as GNU tar does
        ("a/../../b", None),
        (".hidden", None),
        ("a/.git/config", None),
        (".", None),
        ("", None),
        ("./", None),
    ],
)
def test_normalise_member(name: str, expected: str | None) -> None:
    assert normalise_member(name) == expected


@pytest.mark.parametrize(
    ("name", "archive_name", "compressed"),
    [
        ("a.tar", True, False),
        ("A.TAR", True, False),
        ("a.tar.gz", True, True),
        ("a.TGZ", True, True),
        ("a.gz", False, True),
        ("a.tar.bz2", False, False),
        ("tar", False, False),
        ("a.tarx", False, False),
    ],
)
def test_archive_names(name: str, archive_name: bool, compressed: bool) -> None:
    assert is_archive_name(name) is archive_name
    if archive_name:
        assert is_compressed(name) is compressed


def test_member_etag_is_strong_and_tied_to_name_offset_and_identity(tmp_path: Path) -> None:
    path = tmp_path / "a.tar"
    path.write_bytes(b"x")
    st = os.stat(path)
    tag = member_etag(st, "a", 512)
    assert tag.startswith('"') and tag.endswith('"') and not tag.startswith("W/")
    assert tag == member_etag(st, "a", 512)
    assert len({tag, member_etag(st, "b", 512), member_etag(st, "a", 1024)}) == 3
    os.utime(path, ns=(0, st.st_mtime_ns + 1))
    assert member_etag(os.stat(path), "a", 512) != tag


# -- the index ---------------------------------------------------------------------------


@pytest.mark.parametrize("compressed", [False, True], ids=["tar", "tgz"])
def test_offsets_point_at_the_data(compressed: bool) -> None:
    members = [("a.txt", b"alpha"), ("d/e/f.bin", pattern(70_000)), ("empty", b"")]
    blob = make_tar(members)
    index = index_of(blob, compressed=compressed)
    assert sorted(index.files) == ["a.txt", "d/e/f.bin", "empty"]
    for name, data in members:
        found = index.files[name]
        assert (found.size, found.mtime) == (len(data), MTIME)
        assert blob[found.offset : found.offset + found.size] == data  # the tar stream's bytes
    assert index.readable and index.problem is None


def test_long_names_in_every_format() -> None:
    name = "/".join(["d" * 60] * 4) + "/file.txt"  # 250 characters: beyond ustar's 100
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        blob = make_tar([(name, b"long")], fmt=fmt)
        found = index_of(blob).files[name]
        assert blob[found.offset : found.offset + 4] == b"long"


def test_directories_explicit_and_implied() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.addfile(info("x/y/z.txt", size=1), io.BytesIO(b"z"))
        tar.addfile(info("x", tarfile.DIRTYPE, mtime=1_600_000_000))
        tar.addfile(info("w", tarfile.DIRTYPE, mtime=1_500_000_000))
    index = index_of(out.getvalue())
    assert index.dirs[""] == {
        "x": Entry("x", True, 0, 1_600_000_000),  # the archive's own entry wins
        "w": Entry("w", True, 0, 1_500_000_000),
    }
    assert index.dirs["x"] == {"y": Entry("y", True, 0, 42)}  # implied: the archive's mtime
    assert index.dirs["x/y"] == {"z.txt": Entry("z.txt", False, 1, MTIME)}
    assert index.dirs["w"] == {}


def test_what_is_left_out() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name in ("ok.txt", "../evil", "/etc/x", "a/../../b", ".hidden", "d/.secret", "gone"):
            tar.addfile(info(name, size=2), io.BytesIO(b"ok"))
        tar.addfile(info("link", tarfile.SYMTYPE, linkname="ok.txt"))
        tar.addfile(info("hard", tarfile.LNKTYPE, linkname="ok.txt"))
        tar.addfile(info("dev", tarfile.CHRTYPE, devmajor=1, devminor=3))
        tar.addfile(info("block", tarfile.BLKTYPE, devmajor=8, devminor=0))
        tar.addfile(info("fifo", tarfile.FIFOTYPE))
        tar.addfile(info("gone", tarfile.SYMTYPE, linkname="/etc/passwd"))  # replaces a file
    index = index_of(out.getvalue())
    assert sorted(index.files) == ["ok.txt"]
    assert index.dirs == {"": {"ok.txt": Entry("ok.txt", False, 2, MTIME)}}


def test_a_later_member_of_the_same_name_wins() -> None:
    blob = make_tar([("a", b"first"), ("a", b"second!")])
    found = index_of(blob).files["a"]
    assert blob[found.offset : found.offset + found.size] == b"second!"


def test_truncated_tar_keeps_what_is_whole() -> None:
    blob = make_tar([("a", b"whole"), ("b", pattern(10_000))])
    index = index_of(blob[:2048])  # b's header is there, most of its data is not
    assert sorted(index.files) == ["a"]
    assert index.readable


@pytest.mark.parametrize(
    "raw", [b"", b"this is not a tar archive\n" * 40, b"\x1f\x8b" + b"\x00" * 600],
    ids=["empty-file", "text", "gzip-magic"],
)  # fmt: skip
def test_not_an_archive(raw: bytes) -> None:
    index = read_index(io.BytesIO(raw), compressed=False, size=len(raw), mtime=0)
    assert not index.readable
    assert index.problem


def test_an_archive_of_no_members_is_readable_and_empty() -> None:
    index = index_of(make_tar([]))
    assert index.readable and index.files == {} and index.dirs == {"": {}}


def test_not_gzip() -> None:
    raw = make_tar([("a", b"a")])
    index = read_index(io.BytesIO(raw), compressed=True, size=len(raw), mtime=0)
    assert not index.readable


def test_truncated_gzip_keeps_the_members_before_the_cut() -> None:
    blob = make_tar([("a", b"a" * 100), ("b", pattern(300_000)), ("c", b"c")])
    packed = gzip.compress(blob, compresslevel=1)
    cut = packed[: len(packed) // 2]
    index = read_index(io.BytesIO(cut), compressed=True, size=len(cut), mtime=0)
    assert sorted(index.files) == ["a", "b"]  # b's header was read; its data is checked later
    assert index.readable and index.problem


def test_a_huge_header_block_is_refused_not_read() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        big = info("a", size=1)
        big.pax_headers = {"comment": "x" * (archive.MAX_HEADER + 1)}
        tar.addfile(big, io.BytesIO(b"a"))
    index = index_of(out.getvalue())
    assert not index.readable
    assert "header block" in (index.problem or "")


def test_member_count_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_MEMBERS", 3)
    index = index_of(make_tar([(f"m{i}", b"x") for i in range(10)]))
    assert sorted(index.files) == ["m0", "m1", "m2"]
    assert "more than 3 members" in (index.problem or "")


def test_decompression_walk_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_SCAN", 100_000)
    blob = make_tar([("a", b"a"), ("zeros", bytes(10_000_000)), ("after", b"b")])
    index = index_of(blob, compressed=True)
    assert "after" not in index.files
    assert "goes on past 100000" in (index.problem or "")


def test_index_cache_is_bounded_by_archives_and_entries() -> None:
    def idx(n: int) -> archive.ArchiveIndex:
        return archive.ArchiveIndex(0, files={f"f{i}": archive.Member(0, 0, 0) for i in range(n)})

    cache = IndexCache(archives=2, entries=100)
    keys = [(0, i, 0, 0, 0) for i in range(4)]
    cache.put(keys[0], idx(1))
    cache.put(keys[1], idx(1))
    assert cache.get(keys[0]) is not None  # now the most recent
    cache.put(keys[2], idx(1))
    assert (cache.get(keys[1]), len(cache)) == (None, 2)
    cache.put(keys[3], idx(150))  # over the entry budget alone: kept, everything else goes
    assert (len(cache), cache.get(keys[3]) is not None, cache.cost) == (1, True, 151)


# -- extraction ---------------------------------------------------------------------------


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(str(tmp_path / "spool"))


def spooled(spool: Spool) -> list[str]:
    return sorted(os.listdir(spool.directory)) if os.path.isdir(spool.directory) else []


def test_extract_window_is_exact_and_bounded(spool: Spool) -> None:
    data = pattern(3_000_000)
    packed = gzip.compress(data, compresslevel=1)
    fd, name = extract_window(io.BytesIO(packed), 1_234_567, 1_500_000, spool, threading.Event())
    try:
        assert os.fstat(fd).st_size == 1_500_000
        assert os.pread(fd, 1_500_000, 0) == pattern(1_500_000, 1_234_567)
        assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o600
    finally:
        spool.discard(fd, name)
    assert spooled(spool) == []


@pytest.mark.parametrize(("start", "length"), [(900, 200), (2000, 10)], ids=["inside", "beyond"])
def test_a_stream_shorter_than_its_header_says_is_damage(
    spool: Spool, start: int, length: int
) -> None:
    packed = gzip.compress(pattern(1000))
    with pytest.raises(ArchiveDamaged):
        extract_window(io.BytesIO(packed), start, length, spool, threading.Event())
    assert spooled(spool) == []


@pytest.mark.parametrize("damage", ["magic", "cut"])
def test_a_broken_stream_is_damage(spool: Spool, damage: str) -> None:
    packed = gzip.compress(pattern(200_000), compresslevel=1)
    broken = b"XX" + packed[2:] if damage == "magic" else packed[: len(packed) // 2]
    with pytest.raises(ArchiveDamaged):
        extract_window(io.BytesIO(broken), 0, 200_000, spool, threading.Event())
    assert spooled(spool) == []


def test_a_stopped_extraction_leaves_nothing(spool: Spool) -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(archive._Stopped):
        extract_window(io.BytesIO(gzip.compress(bytes(10))), 0, 10, spool, stop)
    assert spooled(spool) == []


def test_positional_reader_leaves_the_descriptor_offset_alone(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(pattern(100_000))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.lseek(fd, 77, os.SEEK_SET)
        with open_positional(os.dup(fd)) as reader:
            assert reader.read(16) == pattern(16)
            reader.seek(50_000)
            assert reader.read(16) == pattern(16, 50_000)
            assert reader.seek(-16, os.SEEK_END) == 100_000 - 16
        assert os.lseek(fd, 0, os.SEEK_CUR) == 77
    finally:
        os.close(fd)


# -- requests ----------------------------------------------------------------------------


def request(method: str = "GET", **headers: str) -> Request:
    fields = {k.replace("_", "-"): v for k, v in headers.items()}
    return Request(method, b"/x", b"/x", b"", True, fields, True, "none", None)


# -- a cancelled request leaves no spool file -----------------------------------------------


async def until(predicate: Callable[[], bool]) -> None:
    """Poll for up to 10 s (a worker thread's effect has no readiness signal)."""
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.005)


class Zeros:
    def read(self, size: int) -> bytes:
        return bytes(size)


def test_a_request_cancelled_mid_extraction_leaves_nothing(tmp_path: Path, spool: Spool) -> None:
    path = tmp_path / "a.tgz"
    size = 128 * 1024**2
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:  # type: ignore[call-overload]
        tar.addfile(info("zeros", size=size), Zeros())
    files = SimpleNamespace(cache_control=None, max_ranges=100)
    server = ArchiveServer(files, spool, max_member_size=size)  # type: ignore[arg-type]

    async def run() -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        task = asyncio.ensure_future(
            server.respond(request(), resolve(b"/a.tgz/zeros"), 1, fd, os.fstat(fd))
        )
        await until(lambda: len(spooled(spool)) == 1)  # extracting now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: spooled(spool) == [])

    asyncio.run(run())
    assert spooled(spool) == []


def test_a_member_over_the_extraction_limit_is_507_and_spools_nothing(
    tmp_path: Path, spool: Spool
) -> None:
    path = tmp_path / "a.tgz"
    with tarfile.open(path, "w:gz") as tar:  # type: ignore[call-overload]
        tar.addfile(info("big", size=20), io.BytesIO(b"x" * 20))
        tar.addfile(info("small", size=10), io.BytesIO(b"y" * 10))
    files = SimpleNamespace(cache_control=None, max_ranges=100)
    server = ArchiveServer(files, spool, max_member_size=10)  # type: ignore[arg-type]

    async def get(name: str) -> tuple[int, int | None]:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        response = await server.respond(request(), resolve(b"/a.tgz/" + name.encode()), 1, fd,
                                        os.fstat(fd))  # fmt: skip
        response.body.release()
        return response.status, response.body.length

    with pytest.raises(HttpError) as refused:
        asyncio.run(get("big"))
    assert (refused.value.status, refused.value.error) == (507, "member_too_large")
    assert spooled(spool) == []
    assert asyncio.run(get("small")) == (200, 10)  # at the limit: served


# -- the spool ---------------------------------------------------------------------------------


def test_spool_files_are_private_and_named(spool: Spool) -> None:
    fd, name = spool.create()
    try:
        assert name.startswith(f"{PREFIX}{os.getpid()}-")
        st = os.stat(os.path.join(spool.directory, name))
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert stat.S_IMODE(os.stat(spool.directory).st_mode) == 0o700
        assert os.write(fd, b"abc") == 3 and os.pread(fd, 3, 0) == b"abc"
    finally:
        spool.discard(fd, name)
    assert spooled(spool) == []


def test_body_cleanup_runs_once_and_never_raises(spool: Spool) -> None:
    fd, name = spool.create()
    cleanup = spool.body_cleanup(fd, name)
    assert spooled(spool) == [name]  # making the cleanup does nothing yet
    cleanup()
    assert spooled(spool) == []
    with pytest.raises(OSError):
        os.fstat(fd)
    other, other_name = spool.create()  # may reuse fd's number: a second call must not close it
    try:
        cleanup()
        os.fstat(other)
    finally:
        spool.discard(other, other_name)
    fd, name = spool.create()
    os.unlink(os.path.join(spool.directory, name))  # swept from under it
    spool.body_cleanup(fd, name)()


def test_body_cleanup_on_a_running_loop(spool: Spool) -> None:
    async def run() -> int:
        fd, _ = spool.create()
        spool.body_cleanup(fd, _)()
        assert spooled(spool) == []  # the name goes at once
        return fd

    fd = asyncio.run(run())  # asyncio.run waits for the executor: the close ran
    with pytest.raises(OSError):
        os.fstat(fd)


def test_sweep_takes_only_spool_files(spool: Spool) -> None:
    assert spool.sweep() == 0  # no directory yet
    made = [spool.create() for _ in range(3)]
    for fd, _ in made:
        os.close(fd)
    directory = Path(spool.directory)
    (directory / f"{PREFIX}999999999-feedfacefeedface").touch()  # another (dead) process's
    (directory / f"{PREFIX}dir").mkdir()
    (directory / "notes.txt").touch()
    assert spool.sweep(999999999) == 1
    assert spool.sweep() == 3
    assert spooled(spool) == [f"{PREFIX}dir", "notes.txt"]
