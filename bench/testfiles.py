"""The files every server serves: generated per run, deterministic content."""

from __future__ import annotations

import io
import json
import random
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SMALL_NAME = "1k.bin"
SMALL_SIZE = 1024
BIG_NAME = "100m.bin"
BIG_SIZE = 100 * 1024 * 1024
BLOCK_SIZE = 1024 * 1024
SEED = 20240601
# The gzip workload: a 100 KiB JSON file coded on the fly, and another one with a
# precompressed sidecar (gzip -9) beside it, for nginx's gzip_static and ferryman's
# --precompressed.
JSON_NAME = "100k.json"
STATIC_JSON_NAME = "100k-static.json"
JSON_SIZE = 100 * 1024
# The listing workload: a directory of 1,000 small files, listed as HTML.
LISTING_DIR = "list1000"
LISTING_NAMES = tuple(f"file-{n:04d}.txt" for n in range(1000))
# The archive-member workloads: 1,000 members of 1 KiB in a plain tar (and the same tar
# gzipped); one member is asked for from inside the archive, and, by servers that serve
# no tar members, as the plain file beside it with the same bytes.
MEMBERS_DIR = "members"
MEMBERS_COUNT = 1000
MEMBER_SIZE = 1024
MEMBER_INDEX = 500  # the member asked for: one in the middle
MEMBERS_TAR = "members.tar"
MEMBERS_TGZ = "members.tar.gz"
MEMBER_SEED = SEED + 1000  # clear of the big file's block seeds
MEMBER_MTIME = 1_700_000_000


@dataclass(frozen=True)
class TestFiles:
    root: Path

    @property
    def small_path(self) -> str:
        return "/" + SMALL_NAME

    @property
    def big_path(self) -> str:
        return "/" + BIG_NAME

    @property
    def big_size(self) -> int:
        return BIG_SIZE

    @property
    def json_path(self) -> str:
        return "/" + JSON_NAME

    @property
    def static_json_path(self) -> str:
        return "/" + STATIC_JSON_NAME

    def big_bytes(self, start: int, length: int) -> bytes:
        with open(self.root / BIG_NAME, "rb") as f:
            f.seek(start)
            return f.read(length)


def random_block(seed: int, index: int, size: int = BLOCK_SIZE) -> bytes:
    """Block `index` of a seeded sequence: the same bytes on every run."""
    return random.Random(seed + index).randbytes(size)


def repeated_blocks(seed: int, distinct: int, count: int) -> Iterator[bytes]:
    """`count` blocks cycling through `distinct` seeded ones: cheap to make, and a
    range read from a shifted offset still differs from the right one."""
    blocks = [random_block(seed, i) for i in range(distinct)]
    for i in range(count):
        yield blocks[i % distinct]


def make_test_files(root: Path) -> TestFiles:
    """Write the 1 KiB and 100 MiB files, the JSON files, the listed directory and the
    archives of members; the same bytes on every run."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    (root / SMALL_NAME).write_bytes(random_block(SEED, 0)[:SMALL_SIZE])
    with open(root / BIG_NAME, "wb") as f:
        f.writelines(repeated_blocks(SEED, 8, BIG_SIZE // BLOCK_SIZE))
    data = json_document(JSON_SIZE)
    (root / JSON_NAME).write_bytes(data)
    (root / STATIC_JSON_NAME).write_bytes(data)
    sidecar = root / (STATIC_JSON_NAME + ".gz")
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    sidecar.write_bytes(z.compress(data) + z.flush())
    listed = root / LISTING_DIR
    listed.mkdir(exist_ok=True)
    for name in LISTING_NAMES:
        (listed / name).write_bytes(name.encode() + b"\n")
    write_members(root)
    return TestFiles(root)


def member_name(n: int) -> str:
    """Member `n`'s path, inside the archive and under the root alike."""
    return f"{MEMBERS_DIR}/member-{n:04d}.bin"


def member_bytes(n: int) -> bytes:
    """Member `n`'s 1 KiB: its own name first, so a wrong member shows, then seeded bytes."""
    head = f"{member_name(n)}\n".encode()
    return head + random.Random(MEMBER_SEED + n).randbytes(MEMBER_SIZE - len(head))


def members_tar() -> bytes:
    """A plain (ustar) tar of every member, the same bytes on every run."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for n in range(MEMBERS_COUNT):
            data = member_bytes(n)
            info = tarfile.TarInfo(member_name(n))
            info.size, info.mtime, info.mode = len(data), MEMBER_MTIME, 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def write_members(root: Path) -> None:
    """The plain tar, the same tar gzipped (header time 0), and every member as a plain
    file under the root at the path it has inside the archives."""
    tar = members_tar()
    (root / MEMBERS_TAR).write_bytes(tar)
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    (root / MEMBERS_TGZ).write_bytes(z.compress(tar) + z.flush())
    (root / MEMBERS_DIR).mkdir(exist_ok=True)
    for n in range(MEMBERS_COUNT):
        (root / member_name(n)).write_bytes(member_bytes(n))


def json_document(size: int) -> bytes:
    """A JSON array of records like an API's answer: the same bytes on every run."""
    rng = random.Random(SEED)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    records: list[str] = []
    length = 2
    while length < size:
        record = json.dumps(
            {
                "id": len(records),
                "name": " ".join(rng.choice(words) for _ in range(3)),
                "score": round(rng.random() * 1000, 3),
                "tags": rng.sample(words, 2),
                "active": rng.random() < 0.5,
            }
        )
        records.append(record)
        length += len(record) + 1
    text = "[" + ",".join(records) + "]"
    return text[: size - 1].rsplit(",", 1)[0].encode() + b"]"
