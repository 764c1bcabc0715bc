"""Time to first byte of a cold 1 MiB range, at offsets 0, 50% and 99% of a large object.

Cold means a fresh server with an empty cache directory for every offset and
every server, the object already in the upstream. The client is a plain
socket pinned to the client CPU (this process, via sched_setaffinity): the
clock starts when the request is sent and stops at the first body byte and
at the last; the body is compared byte for byte with the object.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from cache_servers import Upstream
from servers import ServerSpec, ServerStartError, running_server
from settings import HOST, Settings
from testfiles import TestFiles

MIB = 1024 * 1024
RANGE = MIB
BIG_KEY = "ttfb.bin"
DISTINCT = 13  # distinct 1 MiB blocks, repeated: a range from a wrong offset differs


def _block(index: int) -> bytes:
    return random.Random(7000 + index).randbytes(MIB)


def object_bytes(size: int) -> bytes:
    blocks = [_block(i) for i in range(DISTINCT)]
    return b"".join(blocks[i % DISTINCT] for i in range(size // MIB))


@dataclass
class Timing:
    first_byte_ms: float
    total_ms: float
    correct: bool
    status: int


def timed_range(port: int, path: str, start: int, expected: bytes, timeout: float) -> Timing:
    """One ranged GET on a new connection, timed to its first and last body byte."""
    end = start + len(expected) - 1
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nRange: bytes={start}-{end}\r\n\r\n"
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        began = time.perf_counter()
        sock.sendall(request.encode())
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            piece = sock.recv(65536)
            if not piece:
                raise ConnectionError("closed before the response head")
            buffer += piece
        head, _, body = buffer.partition(b"\r\n\r\n")
        while not body:
            body = sock.recv(65536)
            if not body:
                raise ConnectionError("closed before the body")
        first = time.perf_counter()
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        length = int(fields.get("content-length", "-1"))
        chunks = [body]
        received = len(body)
        while received < length:
            piece = sock.recv(1 << 20)
            if not piece:
                break
            chunks.append(piece)
            received += len(piece)
        done = time.perf_counter()
    data = b"".join(chunks)
    return Timing(
        (first - began) * 1000, (done - began) * 1000, status == 206 and data == expected, status
    )


def measure_ttfb(
    specs: list[ServerSpec],
    upstream: Upstream,
    size: int,
    files: TestFiles,
    workdir: Path,
    settings: Settings,
) -> list[dict[str, object]]:
    """For each server and offset: a fresh server and cache, one timed cold range."""
    data = object_bytes(size)
    upstream.put(BIG_KEY, data)
    offsets = {"0%": 0, "50%": size // 2, "99%": (size * 99 // 100) - RANGE}
    os.sched_setaffinity(0, {int(settings.client_cpu)})
    rows = []
    for spec in specs:
        for label, offset in offsets.items():
            where = workdir / f"ttfb-{spec.name}-{label.rstrip('%')}"
            row: dict[str, object] = {"server": spec.name, "offset": label, "start": offset}
            try:
                with running_server(spec, files, where, settings) as server:
                    timing = timed_range(
                        server.port, "/" + BIG_KEY, offset, data[offset : offset + RANGE], 120
                    )
                row.update(
                    first_byte_ms=round(timing.first_byte_ms, 1),
                    total_ms=round(timing.total_ms, 1),
                    status="ok" if timing.correct else "wrong",
                    http_status=timing.status,
                )
            except (ServerStartError, OSError) as exc:
                row.update(status="error", note=str(exc)[:300])
            finally:
                shutil.rmtree(where, ignore_errors=True)
            rows.append(row)
    return rows


def render_ttfb(rows: list[dict[str, object]], size: int) -> str:
    lines = [
        f"cold 1 MiB range of a {size // MIB} MiB object: first byte / last byte (ms)",
        f"  {'server':<14}" + "".join(f"{label:>20}" for label in ("0%", "50%", "99%")),
    ]
    for name in dict.fromkeys(str(r["server"]) for r in rows):
        cells = []
        for r in rows:
            if r["server"] != name:
                continue
            if r["status"] == "ok":
                cells.append(f"{r['first_byte_ms']:>9.1f} / {r['total_ms']:<8.1f}")
            else:
                cells.append(f"{r['status']:>20}")
        lines.append(f"  {name:<14}" + "".join(f"{c:>20}" for c in cells))
    return "\n".join(lines)
