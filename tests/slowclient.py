"""A client that downloads slowly, in a thread, for tests of what happens mid-transfer."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Mapping

from tests.rawhttp import request_bytes
from tests.serverproc import ServerProcess


class SlowDownload:
    """GET `target` reading about `rate` bytes/s with a small receive buffer.

    `data` is the raw response once the server closed the connection (ask with
    `Connection: close` to end a keep-alive one), or `error` says what ended it;
    `started` is set once the first bytes arrived (or the attempt ended).
    """

    def __init__(self, srv: ServerProcess, target: str, *, rate: int = 2 * 1024 * 1024,
                 headers: Mapping[str, str] | None = None) -> None:  # fmt: skip
        self.address = (srv.host, srv.port)
        self.raw_request = request_bytes("GET", target, headers)
        self.rate = rate
        self.data: bytes | None = None
        self.error: str | None = None  # what ended it, as text
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> SlowDownload:
        self.thread.start()
        return self

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def body(self) -> bytes:
        """The body of the response, framed by its Content-Length."""
        assert self.error is None and self.data is not None, self.error
        return body_of(self.data)

    def _run(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.settimeout(30)
        try:
            sock.connect(self.address)
            sock.sendall(self.raw_request)
            data = bytearray()
            begin = time.monotonic()
            while chunk := sock.recv(16384):
                data += chunk
                self.started.set()
                ahead = len(data) / self.rate - (time.monotonic() - begin)
                if ahead > 0:
                    time.sleep(ahead)
            self.data = bytes(data)
        except OSError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.started.set()
            sock.close()


def body_of(raw: bytes) -> bytes:
    """The body of one raw response framed by Content-Length."""
    head, _, body = raw.partition(b"\r\n\r\n")
    length = re.search(rb"Content-Length: (\d+)", head)
    assert length is not None, head
    return body[: int(length.group(1))]
