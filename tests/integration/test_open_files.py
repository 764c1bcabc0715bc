"""Kept descriptors and answers kept in memory, seen from a client: always the
current file, never a file that left the root, never a leaked descriptor."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.test_archives import open_descriptors
from tests.serverproc import ServerProcess, Servers, pattern, wait_until

SIZE = 200_000  # above --small-body: answered from the descriptor, not from memory
SMALL = 1_000  # within --small-body: answered from memory once it was read


def make_root(tmp_path: Path, sizes: dict[str, int]) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    for i, (name, size) in enumerate(sizes.items()):
        (root / name).write_bytes(pattern(size, start=i))
    return root


def served(srv: ServerProcess, path: str, headers: dict[str, str] | None = None) -> bytes:
    with srv.connect() as conn:
        r = conn.get(path, headers)
    assert r.status in (200, 206), (r.status, r.body[:200])
    return r.body


def test_a_changed_file_is_served_as_it_is_now(ferryman: Servers, tmp_path: Path) -> None:
    root = make_root(tmp_path, {"f.bin": SIZE})
    target = root / "f.bin"
    srv = ferryman(root=root)
    assert served(srv, "/f.bin") == pattern(SIZE)
    assert served(srv, "/f.bin", {"Range": "bytes=10-19"}) == pattern(SIZE)[10:20]

    # Rewritten in place, same size: the same inode, new bytes.
    new = pattern(SIZE, start=7)
    with open(target, "r+b") as handle:
        handle.write(new)
    assert served(srv, "/f.bin") == new

    # Replaced by a rename: a new inode.
    (root / "tmp").write_bytes(pattern(SIZE + 1))
    os.rename(root / "tmp", target)
    assert served(srv, "/f.bin") == pattern(SIZE + 1)

    # Removed: 404, not the bytes of the kept descriptor.
    target.unlink()
    with srv.connect() as conn:
        assert conn.get("/f.bin").status == 404


def test_a_changed_file_gets_new_validators(ferryman: Servers, tmp_path: Path) -> None:
    """A kept descriptor keeps its answer headers; a changed file must not inherit them."""
    root = make_root(tmp_path, {"f.bin": SIZE})
    target = root / "f.bin"
    srv = ferryman(root=root)
    with srv.connect() as conn:
        before = conn.get("/f.bin", {"Range": "bytes=0-9"})
        again = conn.get("/f.bin")
    assert before.status == 206 and again.status == 200
    assert before.header("ETag") == again.header("ETag") is not None
    assert before.header("Last-Modified") == again.header("Last-Modified")

    with open(target, "r+b") as handle:  # same inode and size
        handle.write(pattern(SIZE, start=3))
    mtime = os.stat(target).st_mtime_ns
    os.utime(target, ns=(mtime, mtime + 86_400 * 10**9))  # a day later: a new Last-Modified
    with srv.connect() as conn:
        after = conn.get("/f.bin", {"Range": "bytes=0-9"})
        stale = conn.get("/f.bin", {"If-None-Match": str(before.header("ETag"))})
        fresh = conn.get("/f.bin", {"If-None-Match": str(after.header("ETag"))})
    assert after.status == 206 and after.body == pattern(SIZE, start=3)[:10]
    assert after.header("ETag") != before.header("ETag")
    assert after.header("Last-Modified") != before.header("Last-Modified")
    assert stale.status == 200 and fresh.status == 304


@pytest.mark.parametrize("size", [SIZE, SMALL], ids=["descriptor", "memory"])
@pytest.mark.parametrize("moved", ["file", "directory", "directory_to_dotname"])
def test_a_file_moved_out_of_the_root_is_not_reached_through_a_symlink(
    ferryman: Servers, tmp_path: Path, size: int, moved: str
) -> None:
    root = make_root(tmp_path, {})
    (root / "d" / "e").mkdir(parents=True)
    (root / "d" / "e" / "f.bin").write_bytes(pattern(size))
    outside = tmp_path / "outside"
    outside.mkdir()
    srv = ferryman(root=root)
    for _ in range(2):  # the second answer comes from what was kept
        assert served(srv, "/d/e/f.bin") == pattern(size)
    if moved == "file":  # the file's own ctime changes
        os.rename(root / "d" / "e" / "f.bin", outside / "f.bin")
        os.symlink(outside / "f.bin", root / "d" / "e" / "f.bin")
    elif moved == "directory":  # only a directory above it changes
        os.rename(root / "d", outside / "d")
        os.symlink(outside / "d", root / "d")
    else:  # still under the root, but under a dot-name, which is never served
        os.rename(root / "d", root / ".d")
        os.symlink(".d", root / "d")
    with srv.connect() as conn:
        assert conn.get("/d/e/f.bin").status == 404


def test_kept_descriptors_are_closed_once_unused(ferryman: Servers, tmp_path: Path) -> None:
    root = make_root(tmp_path, {f"f{i}.bin": SIZE for i in range(5)})
    # The state directory outside the root: its metric files stay open, and are not served.
    srv = ferryman("--open-files", "3", "--open-files-idle", "3s",
                   "--state-dir", str(tmp_path / "state"), root=root)  # fmt: skip
    (worker,) = srv.child_pids()
    for _ in range(3):
        for i in range(5):
            assert served(srv, f"/f{i}.bin") == pattern(SIZE, start=i)
    kept = {p for p in open_descriptors(worker) if p.startswith(f"{root}/")}
    assert kept == {str(root / f"f{i}.bin") for i in (2, 3, 4)}  # the capacity, most recent
    # Unused for 3 s, they are closed (the worker sweeps once a second);
    # the default of 10 s would be too late here.
    assert wait_until(
        lambda: not any(p.startswith(f"{root}/") for p in open_descriptors(worker)), timeout=8
    ), open_descriptors(worker)


def test_open_files_off_keeps_nothing(ferryman: Servers, tmp_path: Path) -> None:
    root = make_root(tmp_path, {"f.bin": SIZE})
    srv = ferryman("--open-files", "0", root=root)
    (worker,) = srv.child_pids()
    assert served(srv, "/f.bin") == pattern(SIZE)
    assert wait_until(lambda: str(root / "f.bin") not in open_descriptors(worker))


def test_a_file_created_after_its_404_is_served_at_the_next_request(
    ferryman: Servers, tmp_path: Path
) -> None:
    """Nothing remembers a miss: the request right after the file appears gets it, in
    the root, in a directory that was there, and in one that was not; a 404 again
    once it is gone. Each kind of miss is asked for many times first, on one
    connection, as a flood would."""
    root = make_root(tmp_path, {"here.bin": SMALL})
    (root / "dir").mkdir()
    srv = ferryman(root=root)
    paths = ("/later.bin", "/dir/later.bin", "/new-dir/later.bin")
    with srv.connect() as conn:
        for _ in range(50):
            for path in paths:
                assert conn.get(path).status == 404, path
        for i, path in enumerate(paths):
            file = root / path.lstrip("/")
            file.parent.mkdir(exist_ok=True)
            file.write_bytes(pattern(SMALL, start=i))
            r = conn.get(path)
            assert (r.status, r.body) == (200, pattern(SMALL, start=i)), path
            file.unlink()
            assert conn.get(path).status == 404, path
