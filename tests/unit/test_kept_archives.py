"""Archives kept open, member Representations kept with their index, and small members
answered from memory: reused only for the same version of the archive, never closed under
a use, bounded."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
from collections.abc import Awaitable
from pathlib import Path

import pytest

from ferryman.app import archive
from ferryman.app.fileat import identity
from ferryman.app.local import LocalReader
from ferryman.config import Config
from ferryman.errors import HttpError
from ferryman.http.body import FileRegion
from ferryman.http.parser import Request
from ferryman.http.response import Response
from tests.builders import request

SMALL = b"small member\n" * 10
BIG = bytes(range(256)) * 400  # above --small-body


def write_tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))


def answer(reader: LocalReader, req: Request) -> Response:
    found = reader.get(req)
    if isinstance(found, Response):
        return found
    assert isinstance(found, Awaitable)

    async def wait() -> Response:
        return await found

    return asyncio.run(wait())


def body_bytes(response: Response, fd_bytes: bytes) -> bytes:
    """The body's bytes: literal parts as they are, regions read from the archive's bytes."""
    out = b""
    for part in response.body.parts:
        if isinstance(part, FileRegion):
            out += fd_bytes[part.offset : part.offset + part.count]
        else:
            out += bytes(part)
    return out


def literal(response: Response) -> bytes:
    """The body of an answer made from memory: bytes only, no region of a descriptor."""
    parts = response.body.parts
    assert all(isinstance(part, bytes) for part in parts), parts
    return b"".join(part for part in parts if isinstance(part, bytes))


@pytest.fixture
def reader(tmp_path: Path) -> LocalReader:
    write_tar(tmp_path / "a.tar", {"d/small.bin": SMALL, "d/big.bin": BIG, "e.bin": b""})
    return LocalReader.of(Config(source=str(tmp_path)))


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/a.tar/d/big.bin", {}, 200),
        ("/a.tar/d/big.bin", {"range": "bytes=1-2"}, 206),
        ("/a.tar/d/big.bin", {"if-none-match": "ETAG"}, 304),
        ("/a.tar/d/big.bin", {"if-match": '"other"'}, 412),
        ("/a.tar/d/big.bin", {"range": "bytes=999999-"}, 416),
        ("/a.tar/d/small.bin", {}, 200),  # answered from memory: no body holds the archive
        ("/a.tar/d/missing.bin", {}, 404),
        ("/a.tar/d/", {}, 200),  # a listing
        ("/a.tar/d", {}, 301),
    ],
)
def test_every_answer_through_a_kept_archive_ends_its_use(
    tmp_path: Path, reader: LocalReader, path: str, headers: dict[str, str], status: int
) -> None:
    first = answer(reader, request("GET", "/a.tar/d/big.bin"))
    assert first.status == 200
    first.body.release()
    etag = dict(first.headers)["ETag"]
    kept_files = reader.root.open_files
    assert kept_files is not None
    kept = kept_files.use("a.tar")
    assert kept is not None
    kept.release()
    fields = {k: v.replace("ETAG", etag) for k, v in headers.items()}
    try:
        got = answer(reader, request("GET", path, fields))
        assert got.status == status
        got.body.release()
    except HttpError as exc:
        assert exc.status == status
    assert kept.users == 0, "a use was never released: the descriptor would never close"
    assert kept_files.use("a.tar") is kept  # still the one kept
    kept.release()
    write_tar(tmp_path / "a.tar", {"d/small.bin": b"new"})  # changed: dropped, closed
    assert kept_files.use("a.tar") is None
    with pytest.raises(OSError):
        os.fstat(kept.fd)


def test_a_member_is_served_from_the_kept_descriptor_until_the_archive_changes(
    tmp_path: Path, reader: LocalReader
) -> None:
    data = (tmp_path / "a.tar").read_bytes()
    kept_files = reader.root.open_files
    assert kept_files is not None
    entries = []
    for _ in range(3):
        got = answer(reader, request("GET", "/a.tar/d/big.bin"))
        assert body_bytes(got, data) == BIG
        (region,) = got.body.parts
        assert isinstance(region, FileRegion)
        entry = kept_files.use("a.tar")
        assert entry is not None and entry.fd == region.fd and entry.users == 2
        entry.release()
        got.body.release()
        entries.append(entry)
    assert all(entry is entries[0] for entry in entries)  # one descriptor, kept throughout
    assert entries[0].users == 0
    write_tar(tmp_path / "new.tar", {"d/big.bin": BIG[::-1]})
    os.rename(tmp_path / "new.tar", tmp_path / "a.tar")
    got = answer(reader, request("GET", "/a.tar/d/big.bin"))
    assert body_bytes(got, (tmp_path / "a.tar").read_bytes()) == BIG[::-1]
    got.body.release()


def test_the_archive_its_listings_and_its_members_share_one_kept_descriptor(
    reader: LocalReader,
) -> None:
    kept_files = reader.root.open_files
    assert kept_files is not None
    entries = []
    for path in ("/a.tar", "/a.tar/", "/a.tar/d/", "/a.tar/d/big.bin", "/a.tar/d", "/a.tar/"):
        got = answer(reader, request("GET", path))
        assert got.status in (200, 301), path
        got.body.release()
        entry = kept_files.use("a.tar")
        assert entry is not None
        entry.release()
        entries.append(entry)
    assert all(entry is entries[0] for entry in entries)
    assert entries[0].users == 0 and len(kept_files) == 1


def test_a_members_representation_is_kept_per_version_of_the_archive(
    tmp_path: Path, reader: LocalReader
) -> None:
    def representation() -> object:
        got = answer(reader, request("GET", "/a.tar/d/big.bin", {"range": "bytes=0-0"}))
        got.body.release()
        index = reader.archives.cache.get(identity(os.stat(tmp_path / "a.tar")))
        assert index is not None
        return index.representations["d/big.bin"]

    first = representation()
    assert representation() is first  # made once, kept with the index
    write_tar(tmp_path / "new.tar", {"d/big.bin": BIG})  # same member, a new archive
    os.rename(tmp_path / "new.tar", tmp_path / "a.tar")
    assert representation() is not first


def test_representations_kept_per_archive_are_bounded(
    reader: LocalReader, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "MAX_REPRESENTATIONS", 2)
    for name in ("d/big.bin", "d/small.bin", "e.bin"):
        got = answer(reader, request("GET", "/a.tar/" + name, {"range": "bytes=0-0"}))
        got.body.release()
    index = reader.archives.cache.get(identity(os.stat(tmp_path / "a.tar")))
    assert index is not None
    assert set(index.representations) == {"d/big.bin", "d/small.bin"}  # the first two
    # One not kept is still answered, with the same validators each time.
    etags = {dict(answer(reader, request("GET", "/a.tar/e.bin")).headers)["ETag"] for _ in "ab"}
    assert len(etags) == 1


def test_a_small_member_is_answered_from_memory_while_the_archive_is_the_same(
    tmp_path: Path, reader: LocalReader
) -> None:
    cache = reader.files.cache
    assert cache is not None
    first = answer(reader, request("GET", "/a.tar/d/small.bin"))
    assert first.status == 200 and literal(first) == SMALL
    hits = cache.hits
    again = reader.get(request("GET", "/a.tar/d/small.bin"))  # no task: from memory
    assert isinstance(again, Response) and cache.hits == hits + 1
    assert again.headers == first.headers and literal(again) == SMALL
    # Ranges and conditionals take the full path.
    ranged = answer(reader, request("GET", "/a.tar/d/small.bin", {"range": "bytes=0-4"}))
    assert ranged.status == 206 and cache.hits == hits + 1
    ranged.body.release()
    # Replaced by a member of the same size: the next answer is the new bytes.
    new = SMALL.upper()
    write_tar(tmp_path / "new.tar", {"d/small.bin": new})
    os.rename(tmp_path / "new.tar", tmp_path / "a.tar")
    fresh = answer(reader, request("GET", "/a.tar/d/small.bin"))
    assert literal(fresh) == new
    assert dict(fresh.headers)["ETag"] != dict(first.headers)["ETag"]


def test_memory_off_answers_small_members_from_the_archive(tmp_path: Path) -> None:
    write_tar(tmp_path / "a.tar", {"m": SMALL})
    reader = LocalReader.of(Config(source=str(tmp_path), file_cache=0))
    assert reader.files.cache is None
    data = (tmp_path / "a.tar").read_bytes()
    for _ in range(2):
        got = answer(reader, request("GET", "/a.tar/m"))
        assert body_bytes(got, data) == SMALL
        assert isinstance(got.body.parts[0], FileRegion)
        got.body.release()
