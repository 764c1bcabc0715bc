"""What the memory soak (bench/soak.py) sends, and to which server.

A Kind is one kind of answer: its requests (Steps, sent in turn), the setup
of the server that gives it, and how many answers the short run (CI) and
the long run (`make bench-soak`) measure after how long a warm-up. Every
kind asks for a fixed set of paths, so nothing a worker keeps per path
(open files, small bodies, resolved paths, archive indexes, cache entries)
can grow during a measurement.

Setups, one ferryman each with `--workers 1`: `files` (a read-only
directory with archives and listings), `limited` (the same with
--max-connections 2), `private` (the same with --private, --tokens and
--signing-key), `writes` (an empty directory with --allow-write) and `s3`
(a bucket on moto behind --cache-dir).
"""

from __future__ import annotations

import gzip
import io
import tarfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from tests.s3server import MotoServer, s3_env
from tests.serverproc import ServerProcess, pattern


@dataclass(frozen=True)
class Counts:
    requests: int  # answers measured
    warmup: int  # answers of the same kind before the first reading


SHORT = Counts(10_000, 2_000)  # CI: every kind in about two minutes on two cores
LONG = Counts(100_000, 20_000)  # make bench-soak; the test with FERRYMAN_SLOW=1
# PUT and DELETE fsync (about 800 a second here). 5,000 are enough for a leak
# of 1 KiB each to pass the threshold; the long warm-up fills the catalog's
# SQLite page cache first (2 MiB by default: about 16,000 writes).
WRITES_SHORT, WRITES_LONG = Counts(5_000, 1_000), Counts(20_000, 20_000)
# Each store 404 is a HEAD (the filler's) and a LIST (the worker's) on moto,
# about 250 a second here. Both processes grow once, then stay flat: the worker
# by 1.8 MiB near its 17,000th, the filler by 2 MiB over its first 50,000
# (flat through 150,000 in a separate run); the long warm-up takes the first.
STORE_SHORT, STORE_LONG = Counts(5_000, 500), Counts(20_000, 20_000)

WRITE, READ, PUB = "soak-write-token-0123", "soak-read-token-0123", "soak-pub-token-0123"
SMALL = 1_000  # below --small-body (16 KiB): served from memory
BIG = 256 * 1024  # above it: served zero-copy (sendfile)
MEMBER = pattern(3_000)
WRITE_BODY = 4096


@dataclass(frozen=True)
class Step:
    """One request and the status its answer must have."""

    method: str
    target: str
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: int = 0  # bytes of request body

    def script_arg(self, etags: dict[str, str]) -> str:
        """This step as soak.lua reads it; "{etag}" in a value is the target's ETag."""
        lines = [f"{self.status} {self.method} {self.target}"]
        for name, value in self.headers:
            lines.append(f"{name}: {value.replace('{etag}', etags.get(self.target, ''))}")
        if self.body:
            lines.append(f"@body: {self.body}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Kind:
    """A kind of answer: the steps sent in turn, against the server of `setup`."""

    key: str  # for --kinds and test ids
    title: str
    setup: str  # "files", "limited", "private", "writes", "s3" or "s3-encrypted"
    steps: tuple[Step, ...]
    connections: int = 8
    short: Counts = SHORT
    long: Counts = LONG
    reset: Step | None = None  # sent before each run, so the steps start from a known state

    def __post_init__(self) -> None:
        if self.connections > 1 and len({step.status for step in self.steps}) > 1:
            raise ValueError(f"{self.key}: steps with different statuses need one connection")


def _h(*pairs: str) -> tuple[tuple[str, str], ...]:
    return tuple((pair.split(": ", 1)[0], pair.split(": ", 1)[1]) for pair in pairs)


RANGE = "Range: bytes=1000-8999"
RANGES = "Range: bytes=0-99,5000-5099,200000-200099"
SAME_TAG = "If-None-Match: {etag}"
OTHER_TAG = 'If-Match: "not-this-one"'
TWO_HOSTS = ("Host: soak", "host: another")  # wrk sends only valid requests; this one is 400
HTML = "Accept: text/html"
JSON = "Accept: application/json"
BAD_SIGNATURE = "/small.txt?ferryman-expires=4102444800&ferryman-signature=AAAA"
READ_AUTH = f"Authorization: Bearer {READ}"
PUB_AUTH = f"Authorization: Bearer {PUB}"
WRITE_AUTH = f"Authorization: Bearer {WRITE}"
WRITE_FILE = "/inbox/soak.bin"
GZIP = "Accept-Encoding: gzip"
CLOSE = "Connection: close"  # wrk opens a new connection for every request


def _get(key: str, title: str, setup: str, target: str, status: int, *fields: str) -> Kind:
    """A kind made of one GET (or HEAD, POST: `target` may start with the method)."""
    method, _, path = target.rpartition(" ")
    return Kind(key, title, setup, (Step(method or "GET", path, status, _h(*fields)),))


_WRITE_CYCLE = (
    Step("PUT", WRITE_FILE, 201, _h(WRITE_AUTH), WRITE_BODY),
    Step("PUT", WRITE_FILE, 204, _h(WRITE_AUTH), WRITE_BODY),
    Step("DELETE", WRITE_FILE, 204, _h(WRITE_AUTH)),
    Step("DELETE", WRITE_FILE, 404, _h(WRITE_AUTH)),
)

# fmt: off
KINDS: tuple[Kind, ...] = (
    _get("200-memory", "200, small file (from memory)", "files", "/small.txt", 200),
    _get("200-zero-copy", "200, big file (zero-copy)", "files", "/big.bin", 200),
    _get("head", "HEAD, big file", "files", "HEAD /big.bin", 200),
    _get("206-range", "206, one range", "files", "/big.bin", 206, RANGE),
    _get("206-multi", "206, three ranges", "files", "/big.bin", 206, RANGES),
    _get("304", "304, If-None-Match", "files", "/small.txt", 304, SAME_TAG),
    _get("404", "404", "files", "/missing.txt", 404),
    _get("405", "405, POST", "files", "POST /small.txt", 405),
    _get("412", "412, If-Match", "files", "/big.bin", 412, OTHER_TAG),
    _get("416", "416", "files", "/big.bin", 416, "Range: bytes=999999999-"),
    _get("400", "400, two Host fields", "files", "/small.txt", 400, *TWO_HOSTS),
    _get("gzip-sidecar", "200, precompressed sidecar (gzip)", "files", "/doc.json", 200,
         GZIP),
    _get("gzip-fly", "200, coded on the fly (gzip, kept coded)", "files", "/fly.json", 200,
         GZIP),
    _get("member-tar", "member of a .tar", "files", "/bundle.tar/docs/m.bin", 200),
    _get("member-tar-gz", "member of a .tar.gz", "files", "/bundle.tar.gz/docs/m.bin", 200),
    _get("listing-html", "directory listing, HTML", "files", "/dir/", 200, HTML),
    _get("listing-json", "directory listing, JSON", "files", "/dir/", 200, JSON),
    _get("listing-archive", "archive listing", "files", "/bundle.tar/docs/", 200),
    _get("401", "401, --private, no token", "private", "/pub/small.txt", 401),
    _get("403-token", "403, token for another prefix", "private", "/small.txt", 403, PUB_AUTH),
    _get("403-signature", "403, bad signature", "private", BAD_SIGNATURE, 403),
    _get("200-token", "200, --private, token", "private", "/small.txt", 200, READ_AUTH),
    _get("200-close", "200, a new connection each (Connection: close)", "files", "/small.txt",
         200, CLOSE),
    _get("200-close-limit", "200, a new connection each, 8 clients at --max-connections 2",
         "limited", "/small.txt", 200, CLOSE),
    _get("health", "/-/health", "files", "/-/health", 200),
    _get("ready", "/-/ready (checks kept a second)", "files", "/-/ready", 200),
    replace(_get("metrics", "/-/metrics (every process's files read)", "files", "/-/metrics", 200),
            short=STORE_SHORT, long=STORE_LONG),
    Kind("put-delete", "PUT 201, 204; DELETE 204, 404", "writes", _WRITE_CYCLE, connections=1,
         short=WRITES_SHORT, long=WRITES_LONG, reset=Step("DELETE", WRITE_FILE, 0, _h(WRITE_AUTH))),
    _get("s3-200-memory", "S3, warm cache 200 (memory)", "s3", "/small.txt", 200),
    _get("s3-200-zero-copy", "S3, warm cache 200 (zero-copy)", "s3", "/big.bin", 200),
    _get("s3-206", "S3, warm cache 206", "s3", "/big.bin", 206, RANGE),
    replace(_get("s3-404", "S3, store 404", "s3", "/missing.txt", 404),
            short=STORE_SHORT, long=STORE_LONG),
    _get("s3enc-200-memory", "S3, encrypted cache 200 (memory)", "s3-encrypted", "/small.txt", 200),
    _get("s3enc-200-thread", "S3, encrypted cache 200 (opened in a thread)", "s3-encrypted",
         "/big.bin", 200),
    _get("s3enc-206", "S3, encrypted cache 206 (opened on the loop)", "s3-encrypted", "/big.bin",
         206, RANGE),
)
# fmt: on


# -- the served tree ------------------------------------------------------------------


@dataclass
class Tree:
    """What the servers serve and the files their flags name."""

    base: Path
    root: Path
    write_root: Path
    tokens: Path
    signing_key: Path
    objects: dict[str, bytes] = field(default_factory=dict)  # S3 key -> bytes


def build_tree(base: Path) -> Tree:
    root = base / "root"
    (root / "dir").mkdir(parents=True)
    (root / "pub").mkdir()
    small, big = pattern(SMALL), pattern(BIG)
    (root / "small.txt").write_bytes(small)
    (root / "pub" / "small.txt").write_bytes(small)
    (root / "big.bin").write_bytes(big)
    document = b"[" + b",".join(b'{"id": %d, "tags": ["a", "b"]}' % i for i in range(2000)) + b"]"
    (root / "doc.json").write_bytes(document)
    (root / "doc.json.gz").write_bytes(gzip.compress(document, 9))  # written after: fresh
    (root / "fly.json").write_bytes(document)
    for i in range(40):
        (root / "dir" / f"file-{i:02d}.txt").write_bytes(pattern(100 + i))
    (root / "dir" / "sub").mkdir()
    for name in ("bundle.tar", "bundle.tar.gz"):
        mode = "w:gz" if name.endswith(".gz") else "w"
        with tarfile.open(root / name, mode) as tar:  # type: ignore[call-overload]
            for member in ("docs/m.bin", "docs/other.bin", "top.txt"):
                info = tarfile.TarInfo(member)
                info.size, info.mtime = len(MEMBER), 1_700_000_000
                tar.addfile(info, io.BytesIO(MEMBER))
    write_root = base / "write-root"
    (write_root / "inbox").mkdir(parents=True)
    tokens = base / "tokens"
    tokens.write_text(f"{WRITE} write\n{READ} read\n{PUB} read /pub\n")
    signing_key = base / "signing-key"
    signing_key.write_bytes(b"soak-signing-key-" * 4)
    return Tree(base, root, write_root, tokens, signing_key, {"small.txt": small, "big.bin": big})


STORE_SETUPS = frozenset(("s3", "s3-encrypted"))  # the setups served from moto


def start_server(setup: str, tree: Tree, moto: MotoServer | None = None) -> ServerProcess:
    """The ferryman of one setup, with one worker."""
    state = tree.base / f"state-{setup}"
    common = ("--workers", "1", "--state-dir", str(state))
    if setup == "files":
        return ServerProcess(tree.root, *common)
    if setup == "limited":  # the listener pauses and resumes accepting all the time
        return ServerProcess(tree.root, *common, "--max-connections", "2")
    if setup == "private":
        return ServerProcess(
            tree.root, *common, "--private", "--tokens", str(tree.tokens),
            "--signing-key", str(tree.signing_key),
        )  # fmt: skip
    if setup == "writes":
        return ServerProcess(
            tree.write_root, *common, "--allow-write", "--tokens", str(tree.tokens)
        )
    if setup in STORE_SETUPS:
        if moto is None:
            raise ValueError(f"the {setup} setup needs a moto server")
        bucket = moto.create_bucket()
        for key, data in tree.objects.items():
            moto.put_object(bucket, key, data)
        # Encrypted: a small object is kept opened in memory, a range of the big one
        # opened on the event loop, the whole big one (more than THREAD_DECRYPT) in a thread.
        sealed = ("--cache-encrypt",) if setup == "s3-encrypted" else ()
        # Confirmed versions stay warm for the whole run: every hit is a warm hit.
        return ServerProcess(
            f"s3://{bucket}",
            *common, "--cache-dir", str(tree.base / f"cache-{setup}"), "--cache-revalidate", "1h",
            *sealed, env=s3_env(moto.url),
        )  # fmt: skip
    raise ValueError(f"unknown setup {setup!r}")
