"""The audit benchmark's trees: a SOURCE and a mirror with the same files, and what
should be in them, as each tool reads it.

- the small tree: many small files (64 B to 4 KiB) in nested directories,
  `NNN/NN/NNNNNN.dat`, 50 files a directory and 20 directories under each
  top one, for the listing compare;
- the large tree: files of random sizes between two bounds (1 to 64 MiB in
  the full run) up to a total, for the deep verify.

Each pair is `ROOT/src` and `ROOT/mirror`, written once with the same bytes
(deterministic: the same run sizes give the same trees). Beside them:
`inventory.csv` (key, size, sha256: ferryman's --inventory, which needs the
sizes for a listing compare) and `SHA256SUMS` (sha256sum's manifest of both
trees, paths relative to ROOT, so `sha256sum -c` reads what the others read).
"""

from __future__ import annotations

import csv
import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024
FILES_PER_DIR = 50
DIRS_PER_TOP = 20


@dataclass(frozen=True)
class Tree:
    root: Path
    keys: int  # files in each of src/ and mirror/
    nbytes: int  # bytes of one of them

    @property
    def source(self) -> Path:
        return self.root / "src"

    @property
    def mirror(self) -> Path:
        return self.root / "mirror"

    @property
    def inventory(self) -> Path:
        return self.root / "inventory.csv"

    @property
    def manifest(self) -> Path:
        return self.root / "SHA256SUMS"


def small_key(index: int) -> str:
    leaf = index // FILES_PER_DIR
    return f"{leaf // DIRS_PER_TOP:03d}/{leaf % DIRS_PER_TOP:02d}/{index:06d}.dat"


def small_body(index: int) -> bytes:
    size = 64 + (index * 7919) % 4033
    unit = b"%06d ferryman audit bench\n" % index
    return (unit * (size // len(unit) + 1))[:size]


def write_small_tree(root: Path, count: int) -> Tree:
    """`count` small files in src/ and mirror/, with the inventory and the manifest."""
    entries = []
    for index in range(count):
        key, body = small_key(index), small_body(index)
        for side in ("src", "mirror"):
            path = root / side / key
            if index % FILES_PER_DIR == 0:
                path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        entries.append((key, len(body), hashlib.sha256(body).hexdigest()))
    return _described(root, entries)


def write_large_tree(root: Path, total: int, smallest: int, largest: int, seed: int = 1) -> Tree:
    """Files of random sizes in [smallest, largest] bytes until `total` bytes, in four
    directories; the bytes are a random block with each MiB's place written over its
    start, so that no two MiB are alike."""
    rng = random.Random(seed)
    block = rng.randbytes(MIB)
    entries = []
    written = 0
    index = 0
    while written < total:
        size = rng.randint(smallest, largest)
        key = f"g{index % 4}/file{index:04d}.bin"
        for side in ("src", "mirror"):
            (root / side / key).parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with open(root / "src" / key, "wb") as one, open(root / "mirror" / key, "wb") as two:
            for offset in range(0, size, MIB):
                chunk = b"%08d:%012d;" % (index, offset) + block[22 : min(MIB, size - offset)]
                chunk = chunk[: min(MIB, size - offset)]
                one.write(chunk)
                two.write(chunk)
                digest.update(chunk)
        entries.append((key, size, digest.hexdigest()))
        written += size
        index += 1
    return _described(root, entries)


def write_inventory(path: Path, entries: list[tuple[str, int, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        table = csv.writer(handle, lineterminator="\n")
        table.writerow(["key", "size", "sha256"])
        table.writerows(entries)


def _described(root: Path, entries: list[tuple[str, int, str]]) -> Tree:
    write_inventory(root / "inventory.csv", entries)
    with open(root / "SHA256SUMS", "w", encoding="utf-8") as handle:
        for side in ("src", "mirror"):
            handle.writelines(f"{digest}  {side}/{key}\n" for key, _, digest in entries)
    return Tree(root, len(entries), sum(size for _, size, _ in entries))


def read_all(tree: Tree) -> None:
    """Read every file of both sides once, so that the page cache holds them (warm runs)."""
    for side in (tree.source, tree.mirror):
        for directory, _, names in os.walk(side):
            for name in names:
                with open(os.path.join(directory, name), "rb", buffering=0) as handle:
                    while handle.read(MIB):
                        pass
