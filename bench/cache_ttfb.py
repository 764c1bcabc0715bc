"""Time to first byte of a cold 1 MiB range, at offsets 0, 50% and 99% of a large object.

Cold means a fresh server with an empty cache directory for every offset and
every server, the object already in the upstream. Each figure is the median
of a few samples; the same ranges asked of the upstream directly are timed
too, since a cold range cannot arrive before the upstream sends it (moto, for
one, copies the whole object for every ranged GET: most of a second at 1 GiB). The client is a plain
socket pinned to the client CPU (this process, via sched_setaffinity): the
clock starts when the request is sent and stops at the first body byte and
at the last; the body is compared byte for byte with the object.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from cache_servers import Upstream
from servers import ServerSpec, ServerStartError, running_server
from settings import HOST, Settings
from testfiles import BLOCK_SIZE, TestFiles, repeated_blocks

MIB = 1024 * 1024
RANGE = MIB
BIG_KEY = "ttfb.bin"
DISTINCT = (
    13  # distinct blocks of 1 MiB (BLOCK_SIZE), repeated: a range from a wrong offset differs
)


def object_bytes(size: int) -> bytes:
    return b"".join(repeated_blocks(7000, DISTINCT, size // BLOCK_SIZE))


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
    samples: int = 5,
) -> list[dict[str, object]]:
    """For each server and offset, `samples` times: a fresh server and cache, one timed
    cold range; the median is reported. The servers take turns, so a slow moment of the
    upstream hits all of them. A first row times the same ranges asked of the upstream
    directly: what any cache must wait for at least."""
    data = object_bytes(size)
    upstream.put(BIG_KEY, data)
    offsets = {"0%": 0, "50%": size // 2, "99%": (size * 99 // 100) - RANGE}
    os.sched_setaffinity(0, {int(settings.client_cpu)})
    names = ["upstream", *(spec.name for spec in specs)]
    timings: dict[tuple[str, str], list[Timing]] = {(n, o): [] for n in names for o in offsets}
    errors: dict[tuple[str, str], str] = {}
    direct = f"/{upstream.bucket}/{BIG_KEY}"
    for _ in range(samples):
        for label, offset in offsets.items():
            expected = data[offset : offset + RANGE]
            timings["upstream", label].append(
                timed_range(upstream.moto.port, direct, offset, expected, 120)
            )
            for spec in specs:
                where = workdir / f"ttfb-{spec.name}-{label.rstrip('%')}"
                try:
                    with running_server(spec, files, where, settings) as server:
                        timing = timed_range(server.port, "/" + BIG_KEY, offset, expected, 120)
                    timings[spec.name, label].append(timing)
                except (ServerStartError, OSError) as exc:
                    errors[spec.name, label] = str(exc)[:300]
                finally:
                    shutil.rmtree(where, ignore_errors=True)
    rows: list[dict[str, object]] = []
    for name in names:
        for label, offset in offsets.items():
            row: dict[str, object] = {"server": name, "offset": label, "start": offset}
            found = timings[name, label]
            if (name, label) in errors or not found:
                row.update(status="error", note=errors.get((name, label), "no sample"))
            else:
                row.update(
                    first_byte_ms=round(statistics.median(t.first_byte_ms for t in found), 1),
                    total_ms=round(statistics.median(t.total_ms for t in found), 1),
                    samples_first_byte_ms=[round(t.first_byte_ms, 1) for t in found],
                    status="ok" if all(t.correct for t in found) else "wrong",
                    http_status=found[-1].status,
                )
            rows.append(row)
    return rows


def render_ttfb(rows: list[dict[str, object]], size: int) -> str:
    lines = [
        f"cold 1 MiB range of a {size // MIB} MiB object: first byte / last byte (ms), "
        "median of the samples",
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
