"""The upload steps that a healthy disk and catalog never exercise end to end:
a read-back that disagrees, and a catalog that cannot record."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from ferryman.app.intake import record_delete, record_write
from ferryman.app.uploads import _settle
from ferryman.catalog.db import Catalog
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
    for step in (
        record_write(catalog, "f", size=1, sha256=b"\0" * 32, mtime_ns=0, etag='"e"'),
        record_delete(catalog, "f"),
    ):
        with pytest.raises(HttpError) as info:
            asyncio.run(step)
        assert info.value.status == 503 and ("Retry-After", "1") in info.value.headers
    asyncio.run(record_write(None, "f", size=1, sha256=b"\0" * 32, mtime_ns=0, etag='"e"'))
