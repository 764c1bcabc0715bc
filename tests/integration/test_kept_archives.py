"""Archives kept open between requests, and small members answered from memory, seen from
a client: always the member of the archive as it is now, byte for byte, with the headers
the full path gives; never an archive that left the root, never a leaked descriptor."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from tests.integration.test_archives import open_descriptors
from tests.rawhttp import RawResponse
from tests.serverproc import ServerProcess, Servers, pattern, wait_until

SMALL = 1_000  # within --small-body: answered from memory once it was read
BIG = 200_000  # above it: a region of the archive's kept descriptor
SIZES = [pytest.param(SMALL, id="memory"), pytest.param(BIG, id="descriptor")]
MTIME = 1_700_000_000


def write_tar(path: Path, members: dict[str, bytes], mtime: int = MTIME) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), mtime
            tar.addfile(info, io.BytesIO(data))


def make_root(tmp_path: Path, members: dict[str, bytes]) -> Path:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    write_tar(root / "d" / "a.tar", members)
    return root


def get(srv: ServerProcess, path: str, headers: dict[str, str] | None = None) -> RawResponse:
    with srv.connect() as conn:
        return conn.get(path, headers)


def body_of(srv: ServerProcess, path: str, headers: dict[str, str] | None = None) -> bytes:
    r = get(srv, path, headers)
    assert r.status in (200, 206), (r.status, r.body[:200])
    return r.body


def without_date(r: RawResponse) -> list[tuple[str, str]]:
    """The headers that describe the answer (not the moment, nor the request's id)."""
    return [(k, v) for k, v in r.headers if k.lower() not in ("date", "x-request-id")]


@pytest.mark.parametrize("size", SIZES)
def test_an_archive_replaced_between_two_requests_serves_the_new_member(
    ferryman: Servers, tmp_path: Path, size: int
) -> None:
    root = make_root(tmp_path, {"m.bin": pattern(size)})
    archive = root / "d" / "a.tar"
    srv = ferryman(root=root)
    for _ in range(3):  # the later answers come from what was kept
        assert body_of(srv, "/d/a.tar/m.bin") == pattern(size)
    assert body_of(srv, "/d/a.tar/m.bin", {"Range": "bytes=16-31"}) == pattern(size)[16:32]

    # Replaced by a rename: a new inode, a member of the same name and size, new bytes.
    write_tar(tmp_path / "new.tar", {"m.bin": pattern(size, start=5)})
    os.rename(tmp_path / "new.tar", archive)
    assert body_of(srv, "/d/a.tar/m.bin") == pattern(size, start=5)
    assert body_of(srv, "/d/a.tar/m.bin") == pattern(size, start=5)
    assert body_of(srv, "/d/a.tar/m.bin", {"Range": "bytes=16-31"}) == pattern(size, start=5)[16:32]

    # Rewritten in place, same size and the same mtime put back: the same inode, new bytes.
    before = archive.stat()
    write_tar(tmp_path / "third.tar", {"m.bin": pattern(size, start=9)})
    with open(archive, "r+b") as handle:
        handle.write((tmp_path / "third.tar").read_bytes())
    os.utime(archive, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert archive.stat().st_size == before.st_size
    assert body_of(srv, "/d/a.tar/m.bin") == pattern(size, start=9)

    # Truncated inside the member's data: the member is no longer all there.
    os.truncate(archive, 512 + size // 2)  # its header and (at most) half its data
    assert get(srv, "/d/a.tar/m.bin").status == 404
    os.truncate(archive, 0)  # nothing left: not an archive at all
    assert get(srv, "/d/a.tar/m.bin").status == 404

    # Removed: 404, not the bytes of the kept descriptor.
    archive.unlink()
    assert get(srv, "/d/a.tar/m.bin").status == 404


@pytest.mark.parametrize("size", SIZES)
def test_a_kept_member_has_the_headers_of_the_full_path(
    ferryman: Servers, tmp_path: Path, size: int
) -> None:
    """The same answers, header for header, from a server that keeps nothing."""
    root = make_root(tmp_path, {"m.txt": pattern(size), "n.bin": pattern(size, start=3)})
    keeping = ferryman(root=root)
    fresh = ferryman("--open-files", "0", "--file-cache", "0", root=root)
    for path in ("/d/a.tar/m.txt", "/d/a.tar/n.bin"):
        for headers in ({}, {"Range": "bytes=10-19"}):
            answers = [get(keeping, path, headers) for _ in range(3)] + [get(fresh, path, headers)]
            first = answers[0]
            assert first.status == (206 if headers else 200)
            for other in answers[1:]:
                assert (other.status, without_date(other)) == (first.status, without_date(first))
                assert other.body == first.body
            if not headers:
                assert first.body == pattern(size, start=0 if path.endswith("txt") else 3)
        with keeping.connect() as conn:
            head = conn.request("HEAD", path)
            again = conn.request("HEAD", path)
        assert head.status == again.status == 200 and head.body == again.body == b""
        assert without_date(head) == without_date(again) == without_date(get(fresh, path))


def test_conditional_requests_after_the_archive_changed(ferryman: Servers, tmp_path: Path) -> None:
    """A member's kept validators belong to one version of the archive."""
    root = make_root(tmp_path, {"m.bin": pattern(SMALL)})
    srv = ferryman(root=root)
    old = get(srv, "/d/a.tar/m.bin")
    etag = str(old.header("ETag"))
    assert get(srv, "/d/a.tar/m.bin", {"If-None-Match": etag}).status == 304
    write_tar(tmp_path / "new.tar", {"m.bin": pattern(SMALL, start=2)}, mtime=MTIME + 86_400)
    os.rename(tmp_path / "new.tar", root / "d" / "a.tar")
    stale = get(srv, "/d/a.tar/m.bin", {"If-None-Match": etag})
    assert stale.status == 200 and stale.body == pattern(SMALL, start=2)
    new_etag = str(stale.header("ETag"))
    assert new_etag != etag and stale.header("Last-Modified") != old.header("Last-Modified")
    assert get(srv, "/d/a.tar/m.bin", {"If-None-Match": new_etag}).status == 304
    assert get(srv, "/d/a.tar/m.bin", {"If-Match": etag}).status == 412


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("moved", ["archive", "directory", "directory_to_dotname"])
def test_an_archive_moved_out_of_the_root_is_not_reached_through_a_symlink(
    ferryman: Servers, tmp_path: Path, size: int, moved: str
) -> None:
    root = make_root(tmp_path, {"m.bin": pattern(size)})
    outside = tmp_path / "outside"
    outside.mkdir()
    srv = ferryman(root=root)
    for _ in range(2):  # the second answer comes from what was kept
        assert body_of(srv, "/d/a.tar/m.bin") == pattern(size)
    if moved == "archive":  # the archive's own ctime changes
        os.rename(root / "d" / "a.tar", outside / "a.tar")
        os.symlink(outside / "a.tar", root / "d" / "a.tar")
    elif moved == "directory":  # only a directory above it changes
        os.rename(root / "d", outside / "d")
        os.symlink(outside / "d", root / "d")
    else:  # still under the root, but under a dot-name, which is never served
        os.rename(root / "d", root / ".d")
        os.symlink(".d", root / "d")
    assert get(srv, "/d/a.tar/m.bin").status == 404


def test_an_archive_replaced_by_a_directory_serves_its_files(
    ferryman: Servers, tmp_path: Path
) -> None:
    """What a kept archive answered is a file of SOURCE once a directory takes its name."""
    root = make_root(tmp_path, {"m.bin": pattern(SMALL)})
    srv = ferryman(root=root)
    for _ in range(2):
        assert body_of(srv, "/d/a.tar/m.bin") == pattern(SMALL)
    os.rename(root / "d" / "a.tar", tmp_path / "gone.tar")
    (root / "d" / "a.tar").mkdir()
    (root / "d" / "a.tar" / "m.bin").write_bytes(b"a plain file now\n")
    assert body_of(srv, "/d/a.tar/m.bin") == b"a plain file now\n"


def test_kept_archives_are_closed_once_unused(ferryman: Servers, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for i in range(4):
        write_tar(root / f"a{i}.tar", {"m.bin": pattern(BIG, start=i)})
    srv = ferryman("--open-files", "2", "--open-files-idle", "3s",
                   "--state-dir", str(tmp_path / "state"), root=root)  # fmt: skip
    (worker,) = srv.child_pids()
    for _ in range(2):
        for i in range(4):
            assert body_of(srv, f"/a{i}.tar/m.bin") == pattern(BIG, start=i)
    kept = {p for p in open_descriptors(worker) if p.startswith(f"{root}/")}
    assert kept == {str(root / f"a{i}.tar") for i in (2, 3)}  # the capacity, most recent
    assert wait_until(
        lambda: not any(p.startswith(f"{root}/") for p in open_descriptors(worker)), timeout=8
    ), open_descriptors(worker)


def test_open_files_off_keeps_no_archive(ferryman: Servers, tmp_path: Path) -> None:
    root = make_root(tmp_path, {"m.bin": pattern(BIG)})
    srv = ferryman("--open-files", "0", root=root)
    (worker,) = srv.child_pids()
    for _ in range(2):
        assert body_of(srv, "/d/a.tar/m.bin") == pattern(BIG)
    assert wait_until(lambda: str(root / "d" / "a.tar") not in open_descriptors(worker))


def test_a_compressible_member_kept_in_memory_is_still_negotiated(
    ferryman: Servers, tmp_path: Path
) -> None:
    """Only the identity answer to a request without Accept-Encoding is kept: a client that
    asks for gzip still gets gzip, and one that asks for nothing gets the bytes as they are."""
    text = pattern(4_000)  # above --compress-min-size, within --small-body
    root = make_root(tmp_path, {"m.txt": text})
    srv = ferryman("--compress", "gzip", root=root)
    for _ in range(2):
        plain = get(srv, "/d/a.tar/m.txt")
        assert plain.body == text and plain.header("Content-Encoding") is None
        coded = get(srv, "/d/a.tar/m.txt", {"Accept-Encoding": "gzip"})
        assert coded.status == 200 and coded.header("Content-Encoding") == "gzip"
        assert gzip.decompress(coded.body) == text
        assert plain.header("Vary") == coded.header("Vary") == "Accept-Encoding"
