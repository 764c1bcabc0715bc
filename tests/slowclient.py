"""A client that downloads slowly, for tests of what happens mid-transfer."""

from __future__ import annotations

import re
import socket
import threading
import time
from typing import Any


def slow_download(
    host: str,
    port: int,
    path: str,
    result: dict[str, Any],
    *,
    rate: int = 2 * 1024 * 1024,
    started: threading.Event | None = None,
) -> None:
    """GET `path` reading about `rate` bytes/s with a small receive buffer.

    Stores the raw response in result["data"], or the error in result["error"];
    sets `started` once the first bytes arrived (or the attempt ended).
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.settimeout(30)
    try:
        sock.connect((host, port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        data = bytearray()
        begin = time.monotonic()
        while chunk := sock.recv(16384):
            data += chunk
            if started is not None:
                started.set()
            ahead = len(data) / rate - (time.monotonic() - begin)
            if ahead > 0:
                time.sleep(ahead)
        result["data"] = bytes(data)
    except OSError as exc:
        result["error"] = exc
    finally:
        if started is not None:
            started.set()
        sock.close()


def body_of(raw: bytes) -> bytes:
    """The body of one raw response framed by Content-Length."""
    head, _, body = raw.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
    return body[:length]
