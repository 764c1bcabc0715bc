"""The compiled open and stat (app/_fileat.c) give the answers of their Python twins.

Skipped where the build is not there (no compiler); `make test` builds it, so
there both are asked about the same paths: files, directories, symlinks
(good, dangling, looping), missing names, paths through a file, names that
are not UTF-8, names too long, and a NUL.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman import native
from ferryman.app import fileat
from tests.leakcheck import growth

compiled = fileat._compiled()
pytestmark = pytest.mark.skipif(compiled is None, reason=f"not compiled ({native.STATUS})")

FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


@pytest.fixture(scope="module")
def tree() -> Iterator[int]:
    with tempfile.TemporaryDirectory() as top:
        os.mkdir(os.path.join(top, "dir"))
        with open(os.path.join(top, "dir", "inner.txt"), "wb") as f:
            f.write(b"inner")
        with open(os.path.join(top, "file.bin"), "wb") as f:
            f.write(b"x" * 1234)
        with open(os.fsencode(top) + b"/latin-\xe9", "wb") as f:  # not UTF-8
            f.write(b"l")
        os.symlink("file.bin", os.path.join(top, "link"))
        os.symlink("nowhere", os.path.join(top, "dangling"))
        os.symlink("loop", os.path.join(top, "loop"))
        os.mkfifo(os.path.join(top, "fifo"))
        fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
        yield fd
        os.close(fd)


PATHS = [
    "file.bin", "dir", "dir/inner.txt", "dir/", "dir/missing", "link", "dangling",
    "loop", "fifo", "missing", "file.bin/below", "latin-\udce9", "é", "a" * 300,
    "/".join(["dir"] * 2000), ".", "..",
]  # fmt: skip


def opened(fd: int) -> tuple[int, int] | int:
    """What a descriptor from open_at names (device, inode), closing it; or its errno."""
    if fd < 0:
        return fd
    try:
        st = os.fstat(fd)
        return st.st_dev, st.st_ino
    finally:
        os.close(fd)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("flags", [FLAGS, FLAGS | os.O_DIRECTORY, FLAGS | os.O_NOFOLLOW])
def test_open_at_gives_the_twins_answer(tree: int, path: str, flags: int) -> None:
    assert compiled is not None
    want = opened(fileat._open_at_python(tree, path, flags))
    assert opened(compiled[0](tree, path, flags)) == want


@pytest.mark.parametrize("path", PATHS)
def test_identity_at_gives_the_twins_answer(tree: int, path: str) -> None:
    assert compiled is not None
    assert compiled[1](tree, path) == fileat._identity_at_python(tree, path)


def test_misses_are_errnos_not_exceptions(tree: int) -> None:
    assert compiled is not None
    open_at, identity_at = compiled
    assert open_at(tree, "missing", FLAGS) == -errno.ENOENT
    assert open_at(tree, "file.bin/below", FLAGS) == -errno.ENOTDIR
    assert open_at(tree, "loop", FLAGS) == -errno.ELOOP
    assert identity_at(tree, "missing") == errno.ENOENT
    assert identity_at(tree, "a" * 300) == errno.ENAMETOOLONG
    assert open_at(-1, "missing", FLAGS) == -errno.EBADF
    found = identity_at(tree, "file.bin")
    assert isinstance(found, tuple) and found[2] == 1234


def test_a_nul_is_refused_as_os_refuses_it(tree: int) -> None:
    assert compiled is not None
    open_at, identity_at = compiled
    with pytest.raises(ValueError):
        open_at(tree, "a\0b", FLAGS)
    with pytest.raises(ValueError):
        identity_at(tree, "a\0b")
    with pytest.raises(ValueError):
        fileat._open_at_python(tree, "a\0b", FLAGS)
    with pytest.raises(ValueError):
        fileat._identity_at_python(tree, "a\0b")


def test_the_descriptor_is_not_inherited(tree: int) -> None:
    assert compiled is not None
    fd = compiled[0](tree, "file.bin", os.O_RDONLY)  # no O_CLOEXEC asked: added, as os.open does
    try:
        assert not os.get_inheritable(fd)
    finally:
        os.close(fd)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab./é\udce9", max_size=12))
def test_any_path_gets_the_twins_answer(tree: int, path: str) -> None:
    assert compiled is not None
    assert compiled[1](tree, path) == fileat._identity_at_python(tree, path)
    assert opened(compiled[0](tree, path, FLAGS)) == opened(
        fileat._open_at_python(tree, path, FLAGS)
    )


def test_no_call_leaves_memory_behind(tree: int) -> None:
    """Every reference the C code takes is given back: 100,000 calls of each kind (hit,
    miss, refusal) leave the traced memory where it was (a leaked tuple or path per call
    would be megabytes)."""
    assert compiled is not None
    open_at, identity_at = compiled

    def each_kind() -> None:
        identity_at(tree, "file.bin")
        identity_at(tree, "missing")
        os.close(open_at(tree, "file.bin", FLAGS))
        open_at(tree, "missing", FLAGS)
        with pytest.raises(ValueError):
            identity_at(tree, "a\0b")

    grown = growth(each_kind, __file__)
    assert grown < 64 * 1024, grown
