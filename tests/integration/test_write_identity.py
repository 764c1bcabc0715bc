"""What a written file is known by: an edit that keeps the size and restores the
mtime gets a new ETag and loses its Repr-Digest, through a real server."""

from __future__ import annotations

import os
from pathlib import Path

from tests.serverproc import pattern
from tests.writing import Writable, catalog_entry, put, repr_digest


def test_an_edit_with_the_mtime_restored_is_a_new_version(
    writable: Writable, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    srv = writable("--open-files", "0", "--file-cache", "0", root=root)
    data = pattern(50_000)
    written = put(srv, "/doc.bin", data)
    assert written.status == 201
    entry = catalog_entry(tmp_path / "state", "doc.bin")
    assert entry is not None
    st = os.stat(root / "doc.bin")
    assert (entry.ino, entry.ctime_ns, entry.etag) == (st.st_ino, st.st_ctime_ns,
                                                       written.header("etag"))  # fmt: skip
    before = srv.get("/doc.bin")
    assert before.header("repr-digest") == repr_digest(data)
    with open(root / "doc.bin", "r+b") as handle:
        handle.seek(100)
        handle.write(b"EDITED")
    os.utime(root / "doc.bin", ns=(st.st_atime_ns, st.st_mtime_ns))
    after = srv.get("/doc.bin")
    assert after.body[100:106] == b"EDITED"
    assert after.header("etag") != before.header("etag")
    assert after.header("repr-digest") is None
    old = before.header("etag")
    assert old
    resumed = srv.get("/doc.bin", {"Range": "bytes=0-9", "If-Range": old})  # restarts
    assert resumed.status == 200
