"""Instructions one answer costs a worker in user space, counted by callgrind.

    .venv/bin/python bench/instructions.py [--answers 2000] [--kind range|small|...]

Wall-clock figures on a shared machine move by 10 to 40% between runs; an
instruction count moves by about 1%, so a change of a few percent in the
Python of the request path shows here when wrk's figures cannot tell it from
noise. It counts user space only (the kernel's share is what `bench/run.sh`
and the CPU per answer show) and one connection's answers at a time, so it
says nothing about batching under load.

`--kind` chooses the answer: a random 64 KiB range (`range`), three 16 KiB
ranges as one multipart/byteranges answer (`multirange`), a 1 KiB file
(`small`), the 304 of that file to an If-None-Match with its ETag
(`notmodified`), or a 100 KiB JSON file asked for with `Accept-Encoding:
gzip` and answered from its precompressed sidecar (`sidecar`). ferryman runs under
`valgrind --tool=callgrind` with one worker; after a warm-up the worker's
counters are zeroed, the answers are asked for and checked byte for byte,
and the worker's counters dumped. Needs valgrind.
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testfiles import JSON_SIZE, json_document

ROOT = Path(__file__).resolve().parent.parent
FILE_SIZE = 8 * 1024 * 1024
RANGE = 65536
MULTI_RANGE = 16384  # three of them, as the bench's multirange workload asks
CONNECTIONS = 4


def ask(sock: socket.socket, kind: str, data: bytes, rnd: random.Random, etag: bytes = b"") -> None:
    wanted: list[bytes] = []  # the bytes of each range asked for, in order
    if kind == "small":
        head, path, wanted = b"", b"/small.bin", [data[:1024]]
    elif kind == "notmodified":
        head, path = b"If-None-Match: %s\r\n" % etag, b"/small.bin"
    elif kind == "sidecar":
        head, path, wanted = b"Accept-Encoding: gzip\r\n", b"/doc.json", [data]
    else:
        count, length = (1, RANGE) if kind == "range" else (3, MULTI_RANGE)
        third = FILE_SIZE // count  # one range in each third, ascending (bench/workloads.py)
        specs = []
        for i in range(count):
            first = i * third + rnd.randrange(0, third - length)
            specs.append(b"%d-%d" % (first, first + length - 1))
            wanted.append(data[first : first + length])
        head, path = b"Range: bytes=%s\r\n" % b",".join(specs), b"/big.bin"
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: bench\r\n%s\r\n" % (path, head))
    got = b""
    while b"\r\n\r\n" not in got:
        got += sock.recv(65536)
    status, _, body = got.partition(b"\r\n\r\n")
    if kind == "notmodified":
        if not status.startswith(b"HTTP/1.1 304 ") or body or b"Content-Length" in status:
            raise SystemExit(f"wrong answer: {got[:60]!r}")
        return
    length_line = re.search(rb"\r\nContent-Length: (\d+)", status)
    if length_line is None or not status.startswith(b"HTTP/1.1 20"):
        raise SystemExit(f"wrong answer: {status[:60]!r}")
    if kind == "sidecar" and b"\r\nContent-Encoding: gzip\r\n" not in status + b"\r\n":
        raise SystemExit(f"not the sidecar: {status!r}")
    while len(body) < int(length_line.group(1)):
        body += sock.recv(65536)
    parts = [body]
    if len(wanted) > 1:  # multipart/byteranges: each part's bytes follow its blank line
        parts, at = [], 0
        for want in wanted:
            at = body.find(b"\r\n\r\n", at) + 4
            parts.append(body[at : at + len(want)])
            at += len(want)
    if parts != wanted:
        raise SystemExit(f"wrong answer: {status[:60]!r}, {len(body)} bytes")


def run(kind: str, answers: int, workdir: Path, keep: Path | None = None) -> float:
    data = random.Random(7).randbytes(FILE_SIZE)
    (workdir / "www").mkdir()
    (workdir / "www" / "big.bin").write_bytes(data)
    (workdir / "www" / "small.bin").write_bytes(data[:1024])
    document = json_document(JSON_SIZE)
    (workdir / "www" / "doc.json").write_bytes(document)
    coded = gzip.compress(document, 9, mtime=0)
    (workdir / "www" / "doc.json.gz").write_bytes(coded)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = workdir / "callgrind.%p"
    ferryman = [sys.executable, str(Path(sys.executable).parent / "ferryman")]
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={out}",
         *ferryman, "serve", str(workdir / "www"), "--port", str(port), "--workers", "1",
         "--state-dir", str(workdir / "state")],
        stdout=subprocess.DEVNULL, stderr=(workdir / "server.log").open("w"),
        start_new_session=True,
    )  # fmt: skip
    try:
        socks = connect_when_answering(server, port, workdir)
        worker = worker_pid(server.pid)
        rnd = random.Random(1)
        wanted = coded if kind == "sidecar" else data
        etag = etag_of(socks[0], b"/small.bin")
        for i in range(300):  # warm-up: caches filled, code paths taken once
            ask(socks[i % CONNECTIONS], kind, wanted, rnd, etag)
        control("-z", worker)
        for i in range(answers):
            ask(socks[i % CONNECTIONS], kind, wanted, rnd, etag)
        control("-d", worker)
        dump = Path(f"{str(out).replace('%p', str(worker))}.1")
        total = int(re.search(r"^summary: (\d+)", dump.read_text(), re.M).group(1))  # type: ignore[union-attr]
        if keep is not None:
            shutil.copyfile(dump, keep)
        return total / answers
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def etag_of(sock: socket.socket, path: bytes) -> bytes:
    """The ETag of `path`, from a HEAD (what a revalidating client sends back)."""
    sock.sendall(b"HEAD %s HTTP/1.1\r\nHost: bench\r\n\r\n" % path)
    got = b""
    while b"\r\n\r\n" not in got:
        got += sock.recv(65536)
    found = re.search(rb"\r\nETag: ([^\r]+)", got)
    if found is None:
        raise SystemExit(f"no ETag: {got!r}")
    return found.group(1)


def connect_when_answering(
    server: subprocess.Popen[bytes], port: int, workdir: Path
) -> list[socket.socket]:
    """CONNECTIONS connections, once the worker answers (the arbiter's socket
    takes connections before a worker runs)."""
    deadline = time.monotonic() + 300
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"HEAD /small.bin HTTP/1.1\r\nHost: bench\r\n\r\n")
                if sock.recv(100).startswith(b"HTTP/1.1 200"):
                    return [
                        socket.create_connection(("127.0.0.1", port)) for _ in range(CONNECTIONS)
                    ]
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"ferryman did not start: see {workdir}/server.log")
        time.sleep(0.5)


def worker_pid(arbiter: int) -> int:
    """The worker: the descendant of `arbiter` whose command line names the listening socket."""
    todo = [arbiter]
    while todo:
        pid = todo.pop()
        try:
            if pid != arbiter and b"--listen-fd" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    raise SystemExit("no worker found")


def control(flag: str, pid: int) -> None:
    subprocess.run(
        ["callgrind_control", flag, str(pid)], check=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--answers", type=int, default=2000)
    parser.add_argument(
        "--kind",
        choices=("range", "multirange", "small", "notmodified", "sidecar"),
        default="range",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep the worker's callgrind file here (callgrind_annotate reads it)",
    )
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("needs valgrind (apt-get install -y valgrind)")
    with tempfile.TemporaryDirectory(prefix="ferryman-instr-") as tmp:
        per_answer = run(args.kind, args.answers, Path(tmp), args.keep)
    print(f"{args.kind}: {per_answer:,.0f} instructions per answer in the worker's user space "
          f"({args.answers} answers)")  # fmt: skip


if __name__ == "__main__":
    main()
