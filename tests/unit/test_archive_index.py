"""Archive indexes, member extraction, and the spool beneath them.

Archives are built in memory (or in tmp_path) with tarfile; the index must
place every member's data exactly where the bytes are, keep each .tar.gz
member's CRC-32, leave out whatever may not be served, stop (not fail)
where an archive stops making sense, and mark damaged a gzip stream that
zlib refuses (a trailer that does not match included).
"""

from __future__ import annotations

import asyncio
import gzip
import io
import itertools
import os
import stat
import struct
import tarfile
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.app import archive_index as archive
from ferryman.app.archive import ArchiveReader
from ferryman.app.archive_copies import ArchiveDamaged, CopyMismatch, Stopped, extract_member
from ferryman.app.archive_index import (
    IndexCache,
    Member,
    is_archive_name,
    is_compressed,
    member_etag,
    normalise_member,
    open_positional,
    read_index,
)
from ferryman.app.fileat import identity
from ferryman.app.listing import Entry
from ferryman.app.openfiles import OpenFile
from ferryman.app.paths import resolve
from ferryman.app.spool import LOCK_NAME, PREFIX, Spool, SpoolFull
from ferryman.errors import HttpError
from tests.builders import request
from tests.serverproc import pattern

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


def forged_negative_size(name: str) -> bytes:
    """A GNU header whose base-256 size field says -16: tarfile reads it as it is."""
    header = bytearray(tarfile.TarInfo(name).tobuf(format=tarfile.GNU_FORMAT))
    header[124:136] = b"\xff" * 11 + b"\xf0"
    checksum = sum(header[:148]) + 8 * ord(" ") + sum(header[156:])
    header[148:156] = b"%06o\0 " % checksum
    return bytes(header)


def with_a_forged_member() -> bytes:
    """Members "ok", "neg" (a negative size) and "after", as GNU tar writes them."""
    members = make_tar([("ok", b"fine")], fmt=tarfile.GNU_FORMAT)[:1024]  # no end blocks
    after = make_tar([("after", b"later")], fmt=tarfile.GNU_FORMAT)
    return members + forged_negative_size("neg") + after


@pytest.mark.parametrize("compressed", [False, True], ids=["tar", "tar.gz"])
def test_a_member_of_negative_size_ends_the_index(compressed: bool) -> None:
    # tarfile hands the forged size over as -16; served, it made a 500 (a negative length).
    index = index_of(with_a_forged_member(), compressed=compressed)
    assert sorted(index.files) == ["ok"]
    assert "negative size" in (index.problem or "")
    assert index.damaged is None


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
    assert sorted(index.files) == ["a"]  # b's data is cut: its CRC cannot be known
    assert index.readable and "ends before its trailer" in (index.problem or "")
    assert index.damaged is None and not index.verified  # unverified, not known wrong


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
    assert sorted(index.files) == ["a"]  # zeros' data goes past the cap: no CRC, not served
    assert "goes on past 100000" in (index.problem or "")
    assert not index.verified and index.damaged is None


# -- CRCs and the gzip trailer ------------------------------------------------------------


def test_each_compressed_member_has_its_crc_and_a_tar_has_none() -> None:
    members = [("a.txt", b"alpha"), ("big", pattern(3_000_000)), ("empty", b"")]
    tgz = index_of(make_tar(members), compressed=True)
    assert {name: tgz.files[name].crc for name, _ in members} == {
        name: zlib.crc32(data) for name, data in members
    }
    assert tgz.verified and tgz.damaged is None and tgz.problem is None
    assert {m.crc for m in index_of(make_tar(members)).files.values()} == {None}


@settings(max_examples=40, deadline=None)
@given(
    contents=st.lists(st.binary(max_size=3000), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=3),
    level=st.sampled_from([0, 1, 9]),
)
def test_offsets_and_crcs_hold_across_gzip_members(
    contents: list[bytes], cuts: list[int], level: int
) -> None:
    """A gzip file may be several members (cat a.gz b.gz): the tar stream runs on across them."""
    blob = make_tar([(f"m{i}", data) for i, data in enumerate(contents)])
    bounds = sorted({0, len(blob), *(min(c, len(blob)) for c in cuts)})
    packed = b"".join(
        gzip.compress(blob[a:b], compresslevel=level) for a, b in itertools.pairwise(bounds)
    )
    index = read_index(io.BytesIO(packed), compressed=True, size=len(packed), mtime=0)
    assert index.verified and index.damaged is None and index.problem is None
    for i, data in enumerate(contents):
        found = index.files[f"m{i}"]
        assert blob[found.offset : found.offset + found.size] == data
        assert found.crc == zlib.crc32(data)


def trailer_changed(packed: bytes, *, crc: int | None = None, size: int | None = None) -> bytes:
    """The same gzip with another CRC-32 or ISIZE in its trailer (zlib still inflates it)."""
    old_crc, old_size = struct.unpack("<II", packed[-8:])
    new = struct.pack("<II", old_crc if crc is None else crc, old_size if size is None else size)
    return packed[:-8] + new


def flip_stored_byte(packed: bytes, needle: bytes) -> bytes:
    """Change one byte inside a stored (level 0) deflate block: it still inflates, wrongly."""
    at = packed.index(needle)
    return packed[:at] + bytes([packed[at] ^ 0x20]) + packed[at + 1 :]


@pytest.mark.parametrize("damage", ["crc", "isize", "stored-byte", "deflate"])
def test_a_stream_zlib_refuses_marks_the_archive_damaged(damage: str) -> None:
    blob = make_tar([("a.txt", b"the first member\n"), ("b.bin", pattern(200_000))])
    if damage == "stored-byte":
        packed = flip_stored_byte(gzip.compress(blob, compresslevel=0), b"the first member")
    elif damage == "deflate":
        flipped = bytearray(gzip.compress(blob, compresslevel=6))
        flipped[len(flipped) // 2] ^= 0xFF
        packed = bytes(flipped)
    else:
        good = gzip.compress(blob)
        packed = trailer_changed(good, crc=0) if damage == "crc" else trailer_changed(good, size=7)
    index = read_index(io.BytesIO(packed), compressed=True, size=len(packed), mtime=0)
    assert index.damaged and "damaged" in (index.problem or "")
    assert not index.verified


def test_padding_and_trailing_bytes_after_the_stream() -> None:
    blob = make_tar([("a", b"a")])
    for tail in (b"\0" * 1000, b"trailing garbage, ignored as gzip -d does"):
        packed = gzip.compress(blob) + tail
        index = read_index(io.BytesIO(packed), compressed=True, size=len(packed), mtime=0)
        assert index.verified and index.damaged is None and sorted(index.files) == ["a"]


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
    """Spool files in the directory (the reservation lock is not one)."""
    if not os.path.isdir(spool.directory):
        return []
    return sorted(name for name in os.listdir(spool.directory) if name != LOCK_NAME)


def member_of(blob: bytes, name: str) -> Member:
    return index_of(blob, compressed=True).files[name]


def test_extract_member_is_exact_checked_and_reserved(spool: Spool) -> None:
    blob = make_tar([("a", b"a" * 1000), ("big", pattern(3_000_000)), ("c", b"c")])
    packed = gzip.compress(blob, compresslevel=1)
    found = member_of(blob, "big")
    fd, name = extract_member(io.BytesIO(packed), found, spool, threading.Event())
    try:
        assert os.fstat(fd).st_size == 3_000_000
        assert os.pread(fd, 3_000_001, 0) == pattern(3_000_000)
        assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o600
        assert spooled(spool) == [name]
    finally:
        spool.discard(fd, name)
    assert spooled(spool) == []


def test_a_copy_whose_crc_differs_is_discarded(spool: Spool) -> None:
    blob = make_tar([("a", pattern(5000))])
    found = member_of(blob, "a")
    wrong = Member(found.offset, found.size, found.mtime, (found.crc or 0) ^ 1)
    with pytest.raises(CopyMismatch, match="CRC-32"):
        extract_member(io.BytesIO(gzip.compress(blob)), wrong, spool, threading.Event())
    assert spooled(spool) == []


@pytest.mark.parametrize(("offset", "size"), [(900, 200), (2000, 10)], ids=["inside", "beyond"])
def test_a_stream_shorter_than_its_header_says_is_damage(
    spool: Spool, offset: int, size: int
) -> None:
    packed = gzip.compress(pattern(1000))
    with pytest.raises(ArchiveDamaged):
        extract_member(io.BytesIO(packed), Member(offset, size, 0), spool, threading.Event())
    assert spooled(spool) == []


@pytest.mark.parametrize("damage", ["magic", "cut"])
def test_a_broken_stream_is_damage(spool: Spool, damage: str) -> None:
    packed = gzip.compress(pattern(200_000), compresslevel=1)
    broken = b"XX" + packed[2:] if damage == "magic" else packed[: len(packed) // 2]
    with pytest.raises(ArchiveDamaged):
        extract_member(io.BytesIO(broken), Member(0, 200_000, 0), spool, threading.Event())
    assert spooled(spool) == []


def test_a_stopped_extraction_leaves_nothing(spool: Spool) -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        extract_member(io.BytesIO(gzip.compress(bytes(10))), Member(0, 10, 0), spool, stop)
    assert spooled(spool) == []


def test_an_extraction_past_the_spool_limit_writes_nothing(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool"), max_size=10_000)
    held, held_name = spool.create()  # an upload body, say: counted, not checked
    os.write(held, b"x" * 6000)
    packed = gzip.compress(pattern(5000))
    with pytest.raises(SpoolFull):
        extract_member(io.BytesIO(packed), Member(0, 5000, 0), spool, threading.Event())
    assert spooled(spool) == [held_name]
    spool.discard(held, held_name)
    fd, name = extract_member(io.BytesIO(packed), Member(0, 5000, 0), spool, threading.Event())
    assert os.pread(fd, 5000, 0) == pattern(5000)
    spool.discard(fd, name)


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


# -- a cancelled request leaves no spool file -----------------------------------------------


async def until(predicate: Callable[[], bool]) -> None:
    """Poll for up to 10 s (a worker thread's effect has no readiness signal)."""
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.005)


class Zeros:
    def read(self, size: int = 0, /) -> bytes:
        return bytes(size)


def test_a_request_cancelled_mid_extraction_leaves_nothing(tmp_path: Path, spool: Spool) -> None:
    path = tmp_path / "a.tgz"
    size = 128 * 1024**2
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        tar.addfile(info("zeros", size=size), Zeros())
    server = ArchiveReader(spool, max_member_size=size, cache_control=None, max_ranges=100)

    async def run() -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        task = asyncio.ensure_future(
            server.respond(request(), resolve(b"/a.tgz/zeros"), 1, opened(fd))
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
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(info("big", size=20), io.BytesIO(b"x" * 20))
        tar.addfile(info("small", size=10), io.BytesIO(b"y" * 10))
    server = ArchiveReader(spool, max_member_size=10, cache_control=None, max_ranges=100)

    async def get(name: str) -> tuple[int, int | None]:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        response = await server.respond(request(), resolve(b"/a.tgz/" + name.encode()), 1,
                                        opened(fd))  # fmt: skip
        response.body.release()
        return response.status, response.body.length

    with pytest.raises(HttpError) as refused:
        asyncio.run(get("big"))
    assert (refused.value.status, refused.value.error) == (507, "member_too_large")
    assert spooled(spool) == []
    assert asyncio.run(get("small")) == (200, 10)  # at the limit: served


def test_a_copy_that_does_not_check_is_refused_to_every_waiter_and_logged_once(
    tmp_path: Path, spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "a.tgz"
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(info("m", size=100_000), io.BytesIO(pattern(100_000)))
    server = ArchiveReader(spool, max_member_size=10**9, cache_control=None, max_ranges=100)
    st = os.stat(path)
    with open(path, "rb") as raw:
        index = read_index(raw, compressed=True, size=st.st_size, mtime=0)
    found = index.files["m"]
    # As if the disk now read back other bytes than when the index was made.
    index.files["m"] = Member(found.offset, found.size, found.mtime, (found.crc or 0) ^ 0xFF)
    server.cache.put(identity(st), index)

    async def get() -> int:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            await server.respond(request(), resolve(b"/a.tgz/m"), 1, opened(fd))
        except HttpError as exc:
            assert exc.error == "bad_archive" and "CRC-32" in exc.detail
            return exc.status
        return 200

    async def run() -> list[int]:
        return list(await asyncio.gather(get(), get(), get()))

    with caplog.at_level("WARNING", logger="ferryman.archive"):
        assert asyncio.run(run()) == [500, 500, 500]
    assert [r.getMessage().count("its copy is discarded") for r in caplog.records] == [1]
    assert spooled(spool) == []


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


def test_reservations_hold_room_and_never_pass_the_limit_together(tmp_path: Path) -> None:
    limit = 10 * 1024**2
    spool = Spool(str(tmp_path / "spool"), max_size=limit)
    fd, name = spool.reserve(3 * 1024**2)
    st_made = os.fstat(fd)
    assert st_made.st_size == 3 * 1024**2  # room declared, and allocated where the disk can
    assert spool.usage() == max(st_made.st_size, st_made.st_blocks * 512)
    spool.discard(fd, name)
    made: list[tuple[int, str]] = []
    refused: list[int] = []
    lock = threading.Lock()

    def reserve(size: int) -> None:
        try:
            got = spool.reserve(size)
        except SpoolFull as exc:
            with lock:
                refused.append(exc.size)
            return
        with lock:
            made.append(got)

    threads = [threading.Thread(target=reserve, args=(3 * 1024**2,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert (len(made), len(refused)) == (3, 5)  # 3 x 3 MiB fit in 10 MiB, a 4th does not
        assert spool.usage() <= limit
        assert len(spooled(spool)) == 3
    finally:
        for fd, name in made:
            spool.discard(fd, name)


def opened(fd: int) -> OpenFile:
    """`fd` as the Root hands an archive over: an OpenFile not kept, closed at its release."""
    return OpenFile(fd, os.fstat(fd), ())
