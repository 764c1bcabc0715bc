"""Per-request Python cost of ferryman's hot path, without the network.

Drives one HttpConnection with an in-memory transport: each iteration feeds
one request and collects the response bytes, on the loop a worker runs by
default (uvloop where it is installed). Prints microseconds per
request; with --profile, the top functions by own time (cProfile); with
--catalog, the files are recorded in a SQLite catalog first, so answers
carry Repr-Digest from the digest index. Kinds:
`small` (GET of a 1 KiB file), `head` (HEAD of it), `notmodified` (a 304:
GET of it with If-None-Match: its ETag), `notfound` (a 404), `multirange`
(three 16 KiB ranges of a 4 MiB file, multipart/byteranges), `member` (the
1 KiB file as a member of a plain tar, its index read at the first request;
an answer not in memory is given by a task, so the loop turns once per
request for it; a plain GET of it is answered from memory, as `small` is).

    .venv/bin/python bench/micro/request_path.py [--kind small] [--profile] [--catalog]
        [-n 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import io
import os
import pstats
import tarfile
import tempfile
import time

from ferryman.app.application import Application
from ferryman.app.files import file_etag
from ferryman.catalog import SqliteCatalog
from ferryman.config import Config
from ferryman.metrics.tally import RequestTally
from ferryman.server.accesslog import AccessLog
from ferryman.server.connection import HttpConnection
from ferryman.server.context import ServerContext
from ferryman.server.phase import Phase

HEAD = b"Host: 127.0.0.1:8000\r\nUser-Agent: bench\r\nAccept: */*\r\n"
RANGES = ((0, 16383), (1_500_000, 1_516_383), (3_000_000, 3_016_383))
# kind: (request, expected status line start, expected body from the file's bytes)
KINDS = {
    "small": (b"GET /1k.bin HTTP/1.1\r\n" + HEAD + b"\r\n", b"HTTP/1.1 200 "),
    "head": (b"HEAD /1k.bin HTTP/1.1\r\n" + HEAD + b"\r\n", b"HTTP/1.1 200 "),
    # the ETag is the file's, filled in once it exists
    "notmodified": (
        b"GET /1k.bin HTTP/1.1\r\n" + HEAD + b"If-None-Match: %s\r\n\r\n",
        b"HTTP/1.1 304 ",
    ),
    "notfound": (b"GET /nothing.bin HTTP/1.1\r\n" + HEAD + b"\r\n", b"HTTP/1.1 404 "),
    "multirange": (
        b"GET /4m.bin HTTP/1.1\r\n"
        + HEAD
        + b"Range: bytes="
        + b",".join(b"%d-%d" % r for r in RANGES)
        + b"\r\n\r\n",
        b"HTTP/1.1 206 ",
    ),
    "member": (b"GET /a.tar/dir/1k.bin HTTP/1.1\r\n" + HEAD + b"\r\n", b"HTTP/1.1 200 "),
}
TASKED = ("member",)  # kinds that may be answered by a task: the loop runs it


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The loop a worker runs by default: uvloop where it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class MemoryTransport:
    """Just enough of asyncio.Transport for the synchronous response path."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.keep = True  # off while timing: holding every answer would measure page faults

    def write(self, data: bytes) -> None:
        if self.keep:
            self.out.append(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 5555) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def check_answer(kind: str, response: bytes, small: bytes, big: bytes) -> None:
    """The timed request must be answered in full, with the file's own bytes."""
    head, _, got = response.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    ok = status.startswith(KINDS[kind][1])
    if kind in ("small", "member"):
        ok = ok and got == small
    elif kind in ("head", "notmodified"):
        ok = ok and got == b""
    elif kind == "multirange":
        ok = ok and all(big[a : b + 1] in got for a, b in RANGES)
    if not ok:
        raise SystemExit(f"unexpected answer: {status!r}, {len(got)} body bytes")


def record_files(root: str, *files: tuple[str, bytes]) -> None:
    """Each file in the SQLite catalog a server over `root` opens, as a write records it."""
    state = os.path.join(root, ".ferryman")
    os.mkdir(state)
    with SqliteCatalog(os.path.join(state, "catalog.db")) as catalog:
        for name, data in files:
            st = os.stat(os.path.join(root, name))
            catalog.record(name, size=st.st_size, sha256=hashlib.sha256(data).hexdigest(),
                           mtime_ns=st.st_mtime_ns, etag='"bench"', ino=st.st_ino,
                           ctime_ns=st.st_ctime_ns)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=sorted(KINDS), default="small")
    parser.add_argument("-n", type=int, default=20000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--metrics",
        choices=("on", "off"),
        default="on",
        help="count every answer for /-/metrics (the server's default: on)",
    )
    parser.add_argument("--catalog", action="store_true")
    args = parser.parse_args()
    root = tempfile.mkdtemp()
    small, big = os.urandom(1024), os.urandom(4 * 1024 * 1024)
    for name, data in (("1k.bin", small), ("4m.bin", big)):
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
    with tarfile.open(os.path.join(root, "a.tar"), "w", format=tarfile.USTAR_FORMAT) as tar:
        member = tarfile.TarInfo("dir/1k.bin")
        member.size = len(small)
        tar.addfile(member, io.BytesIO(small))
    if args.catalog:
        record_files(root, ("1k.bin", small), ("4m.bin", big))
    request = KINDS[args.kind][0]
    if args.kind == "notmodified":
        request %= file_etag(os.stat(os.path.join(root, "1k.bin"))).encode()
    loop = new_event_loop()
    config = Config(source=root)
    tally = RequestTally() if args.metrics == "on" else None
    ctx = ServerContext(config, Application(config), loop, AccessLog("off"), tally=tally)
    conn = HttpConnection(ctx)
    transport = MemoryTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]

    def run(n: int) -> None:
        if args.kind in TASKED:
            loop.run_until_complete(run_tasked(n))
        else:
            for _ in range(n):
                conn.data_received(request)
        transport.out.clear()

    async def run_tasked(n: int) -> None:
        for _ in range(n):
            conn.data_received(request)
            # One loop turn per answer, as a worker spends: nothing to wait on but the
            # connection's task, which the connection keeps to itself.
            while conn.phase is not Phase.IDLE:  # noqa: ASYNC110
                await asyncio.sleep(0)

    conn.data_received(request)
    if args.kind in TASKED:
        loop.run_until_complete(asyncio.wait_for(run_tasked(0), 10))
        while conn.phase is not Phase.IDLE:
            loop.run_until_complete(asyncio.sleep(0.01))
    check_answer(args.kind, b"".join(transport.out), small, big)
    if args.catalog and b"\r\nRepr-Digest: " not in b"".join(transport.out):
        raise SystemExit("no Repr-Digest: the catalog was not read")
    transport.keep = False
    run(1000)
    assert conn.phase is Phase.IDLE  # every answer went out at once, no task
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run, args.n)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(22)
        return
    start = time.perf_counter()
    run(args.n)
    elapsed = time.perf_counter() - start
    print(f"{elapsed / args.n * 1e6:.2f} us per request ({args.n / elapsed:,.0f} req/s, one core)")


if __name__ == "__main__":
    main()
