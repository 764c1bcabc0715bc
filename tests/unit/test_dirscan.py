"""The compiled directory scan (audit/_dirscan.c) gives the answer of its Python twin.

Skipped where the build is not there (no compiler); `make test` builds it, so
there both are compared on trees of every kind of entry the walk meets.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman import native
from ferryman.audit import localtree

compiled = localtree._compiled_scan()
pytestmark = pytest.mark.skipif(compiled is None, reason=f"not compiled ({native.STATUS})")

# Names as a directory may hold them: UTF-8 of any script, bytes that are not UTF-8
# (decoded with surrogateescape), dot-names, and names that sort around "/".
NAME = st.one_of(
    st.text(alphabet="ab-.0/_~é日Z", min_size=1, max_size=5).map(str.encode),
    st.binary(min_size=1, max_size=4),
).filter(lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b".."))
KIND = st.sampled_from(["file", "dir", "link-file", "link-dir", "fifo", "dangling"])
ENTRIES = st.lists(st.tuples(NAME, KIND, st.integers(0, 3000)), max_size=30)


def make(root: bytes, entries: list[tuple[bytes, str, int]]) -> None:
    for name, kind, size in entries:
        path = os.path.join(root, name)
        if os.path.lexists(path):
            continue
        if kind == "file":
            Path(os.fsdecode(path)).write_bytes(b"x" * size)
        elif kind == "dir":
            os.mkdir(path)
        elif kind == "link-file":
            os.symlink(b"/etc/hostname", path)
        elif kind == "link-dir":
            os.symlink(b"/tmp", path)
        elif kind == "fifo":
            os.mkfifo(path)
        else:
            os.symlink(b"/nonexistent/ferryman", path)


def both(directory: str | bytes) -> tuple[list[localtree.Entry], list[localtree.Entry]]:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert compiled is not None
        return compiled(fd), localtree._scan_python(fd)
    finally:
        os.close(fd)


@settings(max_examples=150, deadline=None)
@given(ENTRIES)
def test_the_compiled_scan_answers_as_the_python_one(entries: list[tuple[bytes, str, int]]) -> None:
    root = tempfile.mkdtemp().encode()
    try:
        make(root, entries)
        from_c, from_python = both(root)
        assert from_c == from_python
        # and what it lists is what the tree holds: visible regular files and directories
        visible = {
            os.fsdecode(name) + ("/" if kind == "dir" else "")
            for name, kind, _ in entries
            if kind in ("file", "dir") and not name.startswith(b".")
        }
        assert {sort_name for sort_name, _, _ in from_c} <= visible
        assert [e[0] for e in from_c] == sorted((e[0] for e in from_c), reverse=True)
    finally:
        shutil.rmtree(root)


def test_a_scan_reads_the_directory_from_its_start_and_leaves_it_there(tmp_path: Path) -> None:
    """The descriptor's offset is shared with the scan's own copy: scanning twice, or
    the Python twin after the compiled one, sees every entry each time."""
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(name.encode())
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert compiled is not None
        first = compiled(fd)
        assert [e[0] for e in first] == ["c", "b", "a"]
        assert compiled(fd) == first == localtree._scan_python(fd)
    finally:
        os.close(fd)


def test_a_bad_descriptor_is_an_os_error() -> None:
    assert compiled is not None
    fd, name = tempfile.mkstemp()
    try:
        with pytest.raises(OSError):
            compiled(fd)  # a file, not a directory
    finally:
        os.close(fd)
        os.unlink(name)
    with pytest.raises(OSError):
        compiled(987654)
    with pytest.raises((ValueError, OverflowError)):
        compiled(-1)
