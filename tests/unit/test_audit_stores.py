"""Stores as an audit lists and reads them: every key, in code-point order, nothing else."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.audit.localtree import LocalTree, local_ident
from ferryman.audit.model import Stored
from ferryman.audit.stores import Unreadable
from tests.serverproc import pattern

SEGMENT = st.text(alphabet="ab-0/é.Z_", min_size=1, max_size=4).filter(
    lambda s: "/" not in s and not s.startswith(".")
)
KEYS = st.lists(st.lists(SEGMENT, min_size=1, max_size=3).map("/".join), max_size=25)


def listing(tree: LocalTree) -> list[Stored]:
    return list(tree.listing())


def make_tree(root: Path, keys: list[str]) -> list[str]:
    """Create what can be created (a key that is also another's directory is skipped)."""
    made = []
    for key in keys:
        path = root / key
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                continue
            path.write_bytes(key.encode())
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            continue
        made.append(key)
    return made


@settings(max_examples=60, deadline=None)
@given(KEYS)
def test_a_walk_lists_every_file_in_code_point_order(keys: list[str]) -> None:
    root = Path(tempfile.mkdtemp())
    try:
        made = make_tree(root, keys)
        listed = listing(LocalTree(str(root)))
        assert [item.key for item in listed] == sorted(made)
        for item in listed:
            st = os.stat(root / item.key)
            assert (item.size, item.ident) == (st.st_size, local_ident(st))
    finally:
        shutil.rmtree(root)


def test_symlinks_dotfiles_and_special_files_are_not_copies(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"x")
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"1")
    (root / ".ferryman").mkdir()
    (root / ".ferryman" / "catalog.db").write_bytes(b"state")
    (root / ".hidden").write_bytes(b"h")
    (root / "link-out").symlink_to(outside)
    (root / "link-file").symlink_to(outside / "secret")
    os.mkfifo(root / "fifo")
    assert [item.key for item in listing(LocalTree(str(root)))] == ["d/f"]


def test_reads_are_byte_exact_and_never_follow_a_symlink(tmp_path: Path) -> None:
    data = pattern(3 * 1024 * 1024 + 5)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "big").write_bytes(data)
    (tmp_path / "out").write_bytes(b"outside")
    (tmp_path / "a" / "link").symlink_to(tmp_path / "out")
    tree = LocalTree(str(tmp_path))

    def read(key: str) -> bytes:
        return b"".join(tree.read(key))

    assert read("a/big") == data
    for key in ("a/link", "a/missing", "a"):
        try:
            read(key)
        except Unreadable:
            continue
        raise AssertionError(f"{key} was read")


def test_what_is_removed_under_a_walk_is_not_listed_and_nothing_is_left_open(
    tmp_path: Path,
) -> None:
    """A file or a directory removed while the walk passes is gone, not a failed listing;
    a walk stopped early closes every directory it opened."""
    for name in ("a/1", "a/2", "b/1", "b/2", "c/1", "c/2"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    before = len(os.listdir("/proc/self/fd"))
    walk = LocalTree(str(tmp_path)).listing()
    assert next(walk).key == "a/1"
    (tmp_path / "a/2").unlink()  # its directory was read (and each file stat'ed) already
    shutil.rmtree(tmp_path / "b")  # not opened yet
    (tmp_path / "c/1").unlink()  # its directory not read yet
    assert [item.key for item in walk] == ["a/2", "c/2"]
    assert len(os.listdir("/proc/self/fd")) == before
    stopped = LocalTree(str(tmp_path)).listing()
    next(stopped)
    assert len(os.listdir("/proc/self/fd")) > before  # the root and a/ are open
    stopped.close()
    assert len(os.listdir("/proc/self/fd")) == before
