"""Where the state directory goes by default: SOURCE/.ferryman where this user may write,
a per-user directory for a read-only SOURCE, and always SOURCE/.ferryman for a server
that writes. "Read-only" is a read-only mount (tmpfs remounted ro), as root is not
stopped by file modes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.config import Config
from tests.mounts import remount, tmpfs


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "ro", "1m") as mount:
        yield mount


def remount_ro(mount: Path) -> None:
    assert remount(mount, "ro")


def test_a_writable_source_keeps_its_state_inside(tmp_path: Path, xdg: Path) -> None:
    config = Config(source=str(tmp_path))
    assert config.state_choice == (tmp_path / ".ferryman", "in SOURCE")


def test_a_read_only_source_gets_a_per_user_directory(read_only: Path, xdg: Path) -> None:
    remount_ro(read_only)
    path, why = Config(source=str(read_only)).state_choice
    digest = hashlib.sha256(str(read_only).encode()).hexdigest()[:8]
    readable = str(read_only).strip("/").replace("/", "_")
    assert path == xdg / "ferryman" / f"{readable}-{digest}"
    assert why == "per user: SOURCE is not writable"
    assert Config(source=str(read_only / ".")).state_path == path  # one SOURCE, one directory


def test_an_existing_state_directory_is_used_where_it_can_be_written(
    read_only: Path, xdg: Path
) -> None:
    (read_only / ".ferryman").mkdir()
    (read_only / ".ferryman" / "catalog.db").write_bytes(b"")
    assert Config(source=str(read_only)).state_path == read_only / ".ferryman"
    remount_ro(read_only)  # a snapshot, say: its state cannot be written any more
    assert Config(source=str(read_only)).state_path.is_relative_to(xdg)


def test_a_server_that_writes_keeps_its_catalog_where_it_was(read_only: Path, xdg: Path) -> None:
    remount_ro(read_only)
    config = Config(source=str(read_only), allow_write=True)
    assert config.state_choice == (read_only / ".ferryman", "in SOURCE: writes are allowed")


def test_an_explicit_state_dir_and_a_store(tmp_path: Path, xdg: Path) -> None:
    explicit = Config(source=str(tmp_path), state_dir="/x/y")
    assert explicit.state_choice == (Path("/x/y"), "--state-dir")
    store = Config(source="s3://bucket/pre").state_path
    assert store.parent == xdg / "ferryman" and store.name.startswith("bucket_pre-")


def test_the_state_directory_never_shows_in_a_served_checkout(tmp_path: Path) -> None:
    """SOURCE a git checkout: the catalog, spool and locks ferryman keeps in SOURCE/.ferryman
    are ignored by git (a .gitignore in the directory when ferryman makes it)."""
    import subprocess

    from ferryman.config.state import make_state_dir

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "served.txt").write_text("a file of the checkout\n")
    make_state_dir(tmp_path / ".ferryman")
    (tmp_path / ".ferryman" / "catalog.db").write_bytes(b"x")
    (tmp_path / ".ferryman" / "spool").mkdir()
    (tmp_path / ".ferryman" / "spool" / "f").write_bytes(b"y")
    status = subprocess.run(["git", "-C", str(tmp_path), "status", "--porcelain"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert status == "?? served.txt\n"
    (tmp_path / "mine").mkdir()  # a state directory that exists is left as it is
    make_state_dir(tmp_path / "mine")
    assert list((tmp_path / "mine").iterdir()) == []
