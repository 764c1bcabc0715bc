"""`catalog import` and `catalog scan` record a copy's digest with the identity the copy had
while it was read, or not at all: a digest is never tied to bytes it was not computed from."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Generator, Iterator
from pathlib import Path

from ferryman.app.digestindex import DigestIndex
from ferryman.audit.catalog_command import _hashed, _record
from ferryman.audit.localtree import LocalTree
from ferryman.audit.model import Stored
from ferryman.catalog.db import SqliteCatalog


class EditedWhileRead:
    """A directory whose file is rewritten (same size) after its first chunk was read."""

    def __init__(self, root: str) -> None:
        self.tree = LocalTree(root)  # (compiled: wrapped, not subclassed)
        self.name, self.id = self.tree.name, self.tree.id

    def listing(self, after: str | None = None) -> Generator[Stored, None, None]:
        return self.tree.listing(after)

    def read(self, key: str) -> Iterator[bytes]:
        for n, chunk in enumerate(self.tree.read(key)):
            yield chunk
            if n == 0:
                with open(os.path.join(self.id, key), "r+b") as handle:
                    handle.write(b"EDITED")

    def close(self) -> None:
        self.tree.close()


def test_a_copy_edited_while_it_is_hashed_is_not_recorded_with_its_identity(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.bin").write_bytes(b"x" * (3 * 1024 * 1024))
    store = EditedWhileRead(str(root))
    found = _hashed(store, "f.bin")
    assert found is not None
    with SqliteCatalog(tmp_path / "catalog.db") as catalog:
        _record(catalog, store, "f.bin", found)
        st = os.stat(root / "f.bin")
        served = DigestIndex(catalog).repr_digest("f.bin", st)
    on_disk = hashlib.sha256((root / "f.bin").read_bytes()).hexdigest()
    assert served is None or found[1] == on_disk  # (size, sha256, ...)


def test_a_steady_copy_is_recorded_and_served(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.bin").write_bytes(b"y" * 5000)
    store = LocalTree(str(root))
    found = _hashed(store, "f.bin")
    assert found is not None
    with SqliteCatalog(tmp_path / "catalog.db") as catalog:
        _record(catalog, store, "f.bin", found)
        assert DigestIndex(catalog).repr_digest("f.bin", os.stat(root / "f.bin")) is not None
