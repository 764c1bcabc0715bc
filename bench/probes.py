"""One careful request before a workload: is it supported, and right?

Before the plain GET workloads, one whole GET of the file: a status other than
200, or a body other than the file's bytes, is a wrong answer, and the
workload's figure is flagged.

Before a Range workload, a server that answers a Range request with 200 (or
416) does not support that kind of range request: the workload reports it as
"unsupported" instead of downloading whole 100 MiB files in a loop. A 206
whose bytes differ from the file is a wrong answer: the workload still runs,
and its figure is flagged.
"""

from __future__ import annotations

import http.client
import re
from dataclasses import dataclass
from pathlib import Path

from servers import http_connection
from testfiles import TestFiles

CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
CHUNK = 1 << 20


@dataclass
class Probe:
    supported: bool
    correct: bool
    note: str = ""


def _get(port: int, path: str, range_header: str, tls: bool) -> tuple[int, str, bytes | None]:
    """Status, Content-Type and (for a 206 only) the body."""
    conn = http_connection(port, tls, 10)
    try:
        conn.request("GET", path, headers={"Range": range_header})
        resp = conn.getresponse()
        body = resp.read() if resp.status == 206 else None
        return resp.status, resp.getheader("Content-Type", ""), body
    finally:
        conn.close()


def _body_problem(resp: http.client.HTTPResponse, local: Path) -> str:
    """An empty string when the body is the local file's bytes, read in step with it."""
    offset = 0
    with open(local, "rb") as f:
        while chunk := resp.read(CHUNK):
            if chunk != f.read(len(chunk)):
                return f"wrong bytes in {offset:,}-{offset + len(chunk) - 1:,}"
            offset += len(chunk)
        if f.read(1):
            return f"body ends after {offset:,} of {local.stat().st_size:,} bytes"
    return ""


def probe_whole(port: int, files: TestFiles, path: str, tls: bool = False) -> Probe:
    """GET of a whole test file: a 200 whose body is the file's bytes."""
    conn = http_connection(port, tls, 120)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        if resp.status != 200:
            return Probe(True, False, f"GET {path} answers {resp.status}")
        problem = _body_problem(resp, files.root / path.lstrip("/"))
    except http.client.IncompleteRead:
        problem = "body shorter than its Content-Length"
    finally:
        conn.close()
    return Probe(True, not problem, f"GET {path}: {problem}" if problem else "")


def _unsupported(status: int, content_type: str) -> Probe:
    return Probe(False, False, f"answers {status} ({content_type or 'no content type'})")


def probe_single_range(port: int, files: TestFiles, length: int, tls: bool = False) -> Probe:
    start = files.big_size // 3 + 12345
    status, ctype, body = _get(port, files.big_path, f"bytes={start}-{start + length - 1}", tls)
    if status != 206 or body is None:
        return _unsupported(status, ctype)
    if body != files.big_bytes(start, length):
        return Probe(True, False, f"206 with wrong bytes ({len(body)} bytes)")
    return Probe(True, True)


def _parts(body: bytes, boundary: bytes) -> list[tuple[str, bytes]]:
    """(Content-Range, data) of each part of a multipart/byteranges body."""
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.partition(b"\r\n\r\n")
        content_range = ""
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-range":
                content_range = value.strip()
        parts.append((content_range, data.removesuffix(b"\r\n")))
    return parts


def _check_parts(body: bytes, ctype: str, files: TestFiles, ranges: list[tuple[int, int]]) -> str:
    """An empty string when every requested range came back right."""
    match = re.search(r'boundary="?([^";]+)"?', ctype)
    if match is None:
        return "no boundary in Content-Type"
    got = []
    for content_range, data in _parts(body, match.group(1).encode()):
        m = CONTENT_RANGE.fullmatch(content_range)
        if m is None:
            return f"part without a valid Content-Range: {content_range!r}"
        first, last = int(m.group(1)), int(m.group(2))
        if data != files.big_bytes(first, last - first + 1):
            return f"wrong bytes in part {content_range}"
        got.append((first, last))
    if sorted(got) != sorted(ranges):
        return f"parts {got} for ranges {ranges}"
    return ""


def probe_multi_range(
    port: int, files: TestFiles, parts: int, length: int, tls: bool = False
) -> Probe:
    slice_size = files.big_size // parts
    ranges = [(i * slice_size + 777, i * slice_size + 777 + length - 1) for i in range(parts)]
    header = "bytes=" + ",".join(f"{a}-{b}" for a, b in ranges)
    status, ctype, body = _get(port, files.big_path, header, tls)
    if status != 206 or body is None or not ctype.lower().startswith("multipart/byteranges"):
        return _unsupported(status, ctype)
    problem = _check_parts(body, ctype, files, ranges)
    return Probe(True, not problem, problem)
