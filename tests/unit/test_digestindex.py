"""Repr-Digest lookups: right for the version ferryman wrote, absent otherwise,
and never stuck on a passing catalog error."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.app.digestindex import DigestIndex
from ferryman.catalog.db import SqliteCatalog
from ferryman.http.digest import format_repr_digest

Stored = tuple[SqliteCatalog, Path, str]  # a catalog, the file it records, its Repr-Digest


@pytest.fixture
def stored(tmp_path: Path) -> Iterator[Stored]:
    data = b"catalogued bytes"
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    st = os.stat(path)
    catalog = SqliteCatalog(tmp_path / "catalog.db")
    catalog.record("f.bin", size=st.st_size, sha256=hashlib.sha256(data).hexdigest(),
                   mtime_ns=st.st_mtime_ns, etag='"x"')  # fmt: skip
    yield catalog, path, format_repr_digest(hashlib.sha256(data).digest())
    catalog.close()


def test_digest_for_the_version_written(stored: Stored) -> None:
    catalog, path, expected = stored
    index = DigestIndex(catalog)
    assert index.repr_digest("f.bin", os.stat(path)) == expected
    assert index.repr_digest("other.bin", os.stat(path)) is None


def test_changed_file_gets_no_digest_and_a_log_line(
    stored: Stored, caplog: pytest.LogCaptureFixture
) -> None:
    catalog, path, expected = stored
    index = DigestIndex(catalog)
    assert index.repr_digest("f.bin", os.stat(path)) == expected
    os.utime(path, ns=(0, 42))
    with caplog.at_level(logging.WARNING, logger="ferryman.catalog"):
        assert index.repr_digest("f.bin", os.stat(path)) is None
        assert index.repr_digest("f.bin", os.stat(path)) is None  # memoised: logged once
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "changed on disk outside ferryman" in caplog.records[0].message


def test_a_catalog_error_is_not_remembered(stored: Stored, tmp_path: Path) -> None:
    catalog, path, expected = stored
    broken = SqliteCatalog(tmp_path / "other.db")
    broken.close()  # every call now raises CatalogError
    index = DigestIndex(broken)
    assert index.repr_digest("f.bin", os.stat(path)) is None
    index.catalog = catalog  # the catalog answers again
    assert index.repr_digest("f.bin", os.stat(path)) == expected


@pytest.mark.parametrize("replace", [False, True], ids=["edited-in-place", "replaced"])
def test_same_size_edit_with_the_mtime_restored_gets_no_digest(
    tmp_path: Path, replace: bool
) -> None:
    """The catalog keeps inode and ctime: an edit that keeps the size and puts the old
    mtime back still changes the ctime (and a replacement the inode)."""
    data = b"catalogued bytes"
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    st = os.stat(path)
    with SqliteCatalog(tmp_path / "catalog.db") as catalog:
        catalog.record("f.bin", size=st.st_size, sha256=hashlib.sha256(data).hexdigest(),
                       mtime_ns=st.st_mtime_ns, etag='"x"', ino=st.st_ino,
                       ctime_ns=st.st_ctime_ns)  # fmt: skip
        index = DigestIndex(catalog)
        assert index.repr_digest("f.bin", st) is not None
        if replace:
            (tmp_path / "new").write_bytes(b"CATALOGUED BYTES")
            os.replace(tmp_path / "new", path)
        else:
            with open(path, "r+b") as handle:
                handle.write(b"C")
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        edited = os.stat(path)
        assert (edited.st_size, edited.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
        assert index.repr_digest("f.bin", edited) is None


def test_entries_without_inode_and_ctime_match_on_size_and_mtime(stored: Stored) -> None:
    """Recorded by an older ferryman: size and mtime are all there is to go on."""
    catalog, path, expected = stored
    entry = catalog.get("f.bin")
    assert entry is not None and entry.ino is None and entry.ctime_ns is None
    assert DigestIndex(catalog).repr_digest("f.bin", os.stat(path)) == expected


def test_an_inventory_claim_is_never_served_even_when_size_and_mtime_agree(
    tmp_path: Path,
) -> None:
    """`catalog import` records an entry whose copy did not match from the inventory alone,
    with mtime 0 and no inode: a file of that size whose mtime is 0 (a reproducible build's
    epoch) is still not the bytes the inventory's digest was computed from."""
    data = b"the bytes on disk"
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    os.utime(path, ns=(0, 0))
    with SqliteCatalog(tmp_path / "catalog.db") as catalog:
        catalog.record("f.bin", size=len(data), sha256=hashlib.sha256(b"other").hexdigest(),
                       mtime_ns=0, etag='"imported"')  # fmt: skip
        assert DigestIndex(catalog).repr_digest("f.bin", os.stat(path)) is None


def test_an_objects_digest_only_for_the_etag_and_size_recorded(tmp_path: Path) -> None:
    sha = hashlib.sha256(b"object bytes").hexdigest()
    with SqliteCatalog(tmp_path / "catalog.db") as catalog:
        catalog.record("o.bin", size=12, sha256=sha, mtime_ns=0, etag='"e1"')
        catalog.record("claim.bin", size=12, sha256=sha, mtime_ns=0, etag='"imported"')
        index = DigestIndex(catalog)
        assert index.object_digest("o.bin", '"e1"', 12) == format_repr_digest(bytes.fromhex(sha))
        assert index.object_digest("o.bin", '"e2"', 12) is None  # replaced since
        assert index.object_digest("o.bin", '"e1"', 13) is None
        assert index.object_digest("claim.bin", '"imported"', 12) is None
        assert index.object_digest("nothing.bin", '"e1"', 12) is None
