"""The upload steps that a healthy disk and catalog never exercise end to end:
a read-back that disagrees, and a catalog that cannot record."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from ferryman.app.files import FileServer
from ferryman.app.paths import resolve
from ferryman.app.uploads import Uploads, _settle
from ferryman.catalog.db import Catalog
from ferryman.config import Config
from ferryman.errors import HttpError


@pytest.fixture
def temp_fd(tmp_path: Path):  # type: ignore[no-untyped-def]
    fd = os.open(tmp_path / "t", os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, b"stored bytes")
    yield fd
    os.close(fd)


def test_read_back_matches(temp_fd: int) -> None:
    _settle(temp_fd, 12, hashlib.sha256(b"stored bytes").digest(), "full")


@pytest.mark.parametrize(
    ("size", "sha", "mode"),
    [(11, b"stored bytes", "full"), (11, b"stored bytes", "size"), (12, b"other bytes!", "full")],
    ids=["size-full", "size-only", "digest"],
)
def test_read_back_that_disagrees_is_refused(
    temp_fd: int, size: int, sha: bytes, mode: str
) -> None:
    with pytest.raises(HttpError) as info:
        _settle(temp_fd, size, hashlib.sha256(sha).digest(), mode)
    assert (info.value.status, info.value.error) == (500, "verify_failed")


def test_size_mode_does_not_read_back(temp_fd: int) -> None:
    _settle(temp_fd, 12, hashlib.sha256(b"anything else").digest(), "size")


def test_catalog_that_cannot_record_is_503(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.db")
    catalog.close()  # every call now raises CatalogError
    files = FileServer(Config(source=str(tmp_path)))
    try:
        uploads = Uploads(files, "full", catalog)
        (tmp_path / "f").write_bytes(b"x")
        with pytest.raises(HttpError) as info:
            asyncio.run(uploads._record(resolve(b"/f"), os.stat(tmp_path / "f"), b"\0" * 32, '"e"'))
        assert info.value.status == 503 and ("Retry-After", "1") in info.value.headers
    finally:
        files.close()
