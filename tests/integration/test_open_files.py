"""Kept descriptors seen from a client: always the current file, never a leak."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import ServerProcess, pattern, wait_until
from tests.integration.test_archives import open_descriptors, worker_pids

SIZE = 200_000  # above --small-body: answered from the descriptor, not from memory


def served(srv: ServerProcess, path: str, headers: dict[str, str] | None = None) -> bytes:
    with srv.connect() as conn:
        r = conn.get(path, headers)
    assert r.status in (200, 206), (r.status, r.body[:200])
    return r.body


def test_a_changed_file_is_served_as_it_is_now(
    ferryman: type[ServerProcess], tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    target = root / "f.bin"
    target.write_bytes(pattern(SIZE))
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


def test_a_file_moved_out_of_the_root_is_not_reached_through_a_symlink(
    ferryman: type[ServerProcess], tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "f.bin").write_bytes(pattern(SIZE))
    srv = ferryman(root=root)
    assert served(srv, "/f.bin") == pattern(SIZE)
    os.rename(root / "f.bin", outside / "f.bin")
    os.symlink(outside / "f.bin", root / "f.bin")
    with srv.connect() as conn:
        assert conn.get("/f.bin").status == 404


def test_kept_descriptors_are_closed_once_unused(
    ferryman: type[ServerProcess], tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for i in range(5):
        (root / f"f{i}.bin").write_bytes(pattern(SIZE, start=i))
    srv = ferryman("--open-files", "3", root=root)
    (worker,) = worker_pids(srv)
    for _ in range(3):
        for i in range(5):
            assert served(srv, f"/f{i}.bin") == pattern(SIZE, start=i)
    kept = {p for p in open_descriptors(worker) if p.startswith(f"{root}/")}
    assert kept == {str(root / f"f{i}.bin") for i in (2, 3, 4)}  # the capacity, most recent
    # Unused for 10 s, they are closed (the worker sweeps once a second).
    assert wait_until(
        lambda: not any(p.startswith(f"{root}/") for p in open_descriptors(worker)), timeout=15
    ), open_descriptors(worker)


def test_open_files_off_keeps_nothing(ferryman: type[ServerProcess], tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.bin").write_bytes(pattern(SIZE))
    srv = ferryman("--open-files", "0", root=root)
    (worker,) = worker_pids(srv)
    assert served(srv, "/f.bin") == pattern(SIZE)
    assert wait_until(lambda: str(root / "f.bin") not in open_descriptors(worker))
