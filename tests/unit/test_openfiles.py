"""Kept descriptors: reused only for the same file, never closed under a use."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.app.local import LocalReader
from ferryman.app.openfiles import OpenFiles, route
from ferryman.config import Config
from ferryman.errors import HttpError
from ferryman.http.response import Response
from tests.builders import request

IDLE = 10.0  # --open-files-idle


@pytest.fixture
def root(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield tmp_path, fd
    os.close(fd)


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def opened(root: Path, name: str) -> tuple[int, os.stat_result]:
    fd = os.open(root / name, os.O_RDONLY)
    return fd, os.fstat(fd)


def test_an_unchanged_file_is_answered_from_its_kept_descriptor(
    root: tuple[Path, int],
) -> None:
    path, root_fd = root
    (path / "a").write_bytes(b"alpha")
    files = OpenFiles(root_fd, capacity=4, idle=IDLE)
    fd, st = opened(path, "a")
    entry = files.keep("a", fd, st, ())
    entry.release()
    again = files.use("a")
    assert again is entry and again.fd == fd and again.users == 1
    assert os.pread(again.fd, 5, 0) == b"alpha"
    again.release()
    assert is_open(fd)
    assert files.use("b") is None


@pytest.mark.parametrize("change", ["rewrite", "replace", "remove", "move_and_link", "touch"])
def test_any_change_to_the_file_drops_its_descriptor(root: tuple[Path, int], change: str) -> None:
    path, root_fd = root
    (path / "a").write_bytes(b"alpha")
    files = OpenFiles(root_fd, capacity=4, idle=IDLE)
    fd, st = opened(path, "a")
    entry = files.keep("a", fd, st, ())  # this request's use is still running
    if change == "rewrite":  # same inode, new bytes and size
        (path / "a").write_bytes(b"alphabet")
    elif change == "replace":  # a new inode under the same name
        (path / "a.tmp").write_bytes(b"alpha")
        os.rename(path / "a.tmp", path / "a")
    elif change == "remove":
        (path / "a").unlink()
    elif change == "move_and_link":  # the same inode, now reached through a symlink
        outside = path / "elsewhere"
        outside.mkdir()
        os.rename(path / "a", outside / "a")
        os.symlink(outside / "a", path / "a")
    else:  # same size, mtime set back to what it was: only the ctime tells
        os.utime(path / "a", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert files.use("a") is None
    assert len(files) == 0
    assert is_open(fd), "closed under a transfer still using it"
    entry.release()
    assert not is_open(fd)


@pytest.mark.parametrize("moved", ["d", "d/e"])
def test_a_directory_above_the_file_moved_and_linked_back_drops_its_descriptor(
    root: tuple[Path, int], moved: str
) -> None:
    path, root_fd = root
    (path / "d" / "e").mkdir(parents=True)
    (path / "d" / "e" / "a").write_bytes(b"alpha")
    files = OpenFiles(root_fd, capacity=4, idle=IDLE)
    way = route(root_fd, "d/e/a")
    assert len(way) == 2
    files.keep("d/e/a", *opened(path, "d/e/a"), way).release()
    entry = files.use("d/e/a")
    assert entry is not None  # nothing moved yet
    entry.release()
    outside = path.parent / f"outside-{path.name}"
    outside.mkdir()
    os.rename(path / moved, outside / "x")
    os.symlink(outside / "x", path / moved)  # the same file, through a symlink
    assert os.stat(path / "d" / "e" / "a").st_ino == entry.st.st_ino
    assert files.use("d/e/a") is None
    assert route(root_fd, "a") == ()  # a file in the root: no directory to stat


def test_the_least_recently_used_are_closed_beyond_capacity(root: tuple[Path, int]) -> None:
    path, root_fd = root
    files = OpenFiles(root_fd, capacity=2, idle=IDLE)
    fds = {}
    for name in "abc":
        (path / name).write_bytes(name.encode())
        fd, st = opened(path, name)
        fds[name] = fd
        entry = files.keep(name, fd, st, ())
        if name != "a":
            entry.release()
        if name == "b":
            used = files.use("a")  # "a" becomes the most recent
            assert used is not None
            used.release()
    # "b" was the least recently used when "c" came: closed at once.
    assert not is_open(fds["b"])
    assert files.use("b") is None
    kept_a = files.use("a")
    assert kept_a is not None and kept_a.users == 2
    for _ in range(2):
        kept_a.release()
    assert is_open(fds["a"]) and is_open(fds["c"])
    files.close()
    assert not is_open(fds["a"]) and not is_open(fds["c"])


def test_descriptors_unused_for_a_while_are_swept(root: tuple[Path, int]) -> None:
    path, root_fd = root
    files = OpenFiles(root_fd, capacity=8, idle=IDLE)
    (path / "old").write_bytes(b"o")
    (path / "busy").write_bytes(b"b")
    (path / "new").write_bytes(b"n")
    old = files.keep("old", *opened(path, "old"), ())
    old.release()
    busy = files.keep("busy", *opened(path, "busy"), ())
    now = time.monotonic()
    new = files.keep("new", *opened(path, "new"), ())
    new.release()
    new.used_at = now + IDLE  # used just now, as seen from the sweep below
    files.sweep(now + IDLE + 0.5)
    assert not is_open(old.fd)
    assert is_open(busy.fd), "a descriptor in use outlives its entry"
    assert len(files) == 1 and files.use("new") is new
    busy.release()
    assert not is_open(busy.fd)


def test_keeping_a_path_again_replaces_its_entry(root: tuple[Path, int]) -> None:
    path, root_fd = root
    (path / "a").write_bytes(b"one")
    files = OpenFiles(root_fd, capacity=4, idle=IDLE)
    first = files.keep("a", *opened(path, "a"), ())
    second = files.keep("a", *opened(path, "a"), ())
    assert len(files) == 1 and is_open(first.fd)
    first.release()
    assert not is_open(first.fd)
    second.release()
    assert is_open(second.fd)


@pytest.mark.parametrize(
    ("name", "headers", "status"),
    [
        ("big", {"if-none-match": "ETAG"}, 304),
        ("big", {"if-match": '"other"'}, 412),
        ("big", {"range": "bytes=999999-"}, 416),
        ("small", {}, 200),  # answered from memory: no body holds the descriptor
    ],
)
def test_every_answer_without_a_file_body_ends_its_use(
    tmp_path: Path, name: str, headers: dict[str, str], status: int
) -> None:
    (tmp_path / "big").write_bytes(b"x" * 100_000)
    (tmp_path / "small").write_bytes(b"y" * 100)
    files = LocalReader.of(Config(source=str(tmp_path)))
    kept_files = files.root.open_files
    first = files.get(request("GET", "/" + name))
    assert isinstance(first, Response) and first.status == 200
    first.body.release()
    etag = dict(first.headers)["ETag"]
    fields = {k: v.replace("ETAG", etag) for k, v in headers.items()}
    assert kept_files is not None
    kept = kept_files.use(name)
    assert kept is not None
    kept.release()
    try:
        answer = files.get(request("GET", "/" + name, fields))
        assert isinstance(answer, Response) and answer.status == status
    except HttpError as exc:
        assert exc.status == status
    assert kept.users == 0, "a use was never released: the descriptor would never close"
    (tmp_path / name).write_bytes(b"z")  # changed: the entry is dropped, its descriptor closed
    assert kept_files.use(name) is None
    assert not is_open(kept.fd)
