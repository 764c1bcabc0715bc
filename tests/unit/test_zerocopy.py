"""ZeroCopySend on a real socket pair: the bytes in order, and which sends wait for more.

The head must go out alone (no MSG_MORE): held back, it made the kernel's TCP
pacing arm a timer on most ranged answers. Multipart framing between regions
goes with MSG_MORE so it shares a packet with the region that follows.
"""

from __future__ import annotations

import os
import select
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest

from ferryman.http.body import FileRegion, Part
from ferryman.server import zerocopy
from ferryman.server.transfer import Connection
from ferryman.server.zerocopy import DONE, SocketWriter, ZeroCopySend

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

MSG_MORE = getattr(socket, "MSG_MORE", 0)
pytestmark = pytest.mark.skipif(not MSG_MORE, reason="MSG_MORE is Linux-only")


class RecordingSocket(socket.socket):
    """A real socket that remembers the flags of every send()."""

    def __init__(self, fileno: int) -> None:
        super().__init__(fileno=fileno)
        self.flags: list[int] = []

    def send(self, data: ReadableBuffer, flags: int = 0) -> int:
        self.flags.append(flags)
        return super().send(data, flags)


class FakeConnection:
    def __init__(self) -> None:
        self.body_sent = 0
        self.closed = False

    def progress(self) -> None:
        pass

    async def send_while_writable(self, fd: int, send: object) -> str:  # pragma: no cover
        raise AssertionError("unexpected wait: these sends never fill the pair")


def as_connection(fake: FakeConnection) -> Connection:
    """The fake as what ZeroCopySend takes: it has the part a send uses."""
    return cast(Connection, fake)


def send_all(
    tmp_path: Path, head: bytes, parts_of: Callable[[int], list[Part]]
) -> tuple[bytes, list[int], int]:
    data = bytes(range(256)) * 4
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    ours, theirs = socket.socketpair()
    try:
        writer = SocketWriter(ours)
        recording = RecordingSocket(os.dup(ours.fileno()))
        writer.sock.close()
        writer.sock, writer.fd = recording, recording.fileno()
        parts: list[Part] = parts_of(fd)
        conn = FakeConnection()
        send = ZeroCopySend(as_connection(conn), writer, head, parts)
        assert send.advance() == DONE
        writer.close()
        ours.close()
        got = b""
        while chunk := theirs.recv(65536):
            got += chunk
        return got, recording.flags, conn.body_sent
    finally:
        os.close(fd)
        theirs.close()


def test_a_single_region_sends_the_head_alone_then_the_file(tmp_path: Path) -> None:
    got, flags, body_sent = send_all(
        tmp_path, b"HEAD\r\n\r\n", lambda fd: [FileRegion(fd, 10, 100)]
    )
    data = (tmp_path / "f.bin").read_bytes()
    assert got == b"HEAD\r\n\r\n" + data[10:110]
    assert flags == [0]
    assert body_sent == 100


def test_framing_between_regions_waits_for_the_region_and_the_last_does_not(tmp_path: Path) -> None:
    def parts(fd: int) -> list[Part]:
        return [
            b"--sep\r\n\r\n",
            FileRegion(fd, 0, 10),
            b"\r\n--sep\r\n\r\n",
            FileRegion(fd, 500, 20),
            b"\r\n--sep--\r\n",
        ]

    got, flags, body_sent = send_all(tmp_path, b"HEAD\r\n\r\n", parts)
    data = (tmp_path / "f.bin").read_bytes()
    body = b"--sep\r\n\r\n" + data[0:10] + b"\r\n--sep\r\n\r\n" + data[500:520] + b"\r\n--sep--\r\n"
    assert got == b"HEAD\r\n\r\n" + body
    # head+first framing are merged into one literal; it goes alone, as the head
    assert flags == [0, MSG_MORE, 0]
    assert body_sent == len(body)


def test_after_a_partial_send_the_next_call_still_asks_for_a_whole_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fewer, larger sendfile calls: the probed window slides with the offset."""
    size = 3 * zerocopy.SENDFILE_CHUNK + 12345
    data = os.urandom(size)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    asked: list[tuple[int, int]] = []  # (offset, count) of every sendfile call
    real_sendfile = os.sendfile

    def recording_sendfile(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        asked.append((offset, count))
        return real_sendfile(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "sendfile", recording_sendfile)
    fd = os.open(path, os.O_RDONLY)
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)  # partial sends
    received = bytearray()
    reader = threading.Thread(target=_drain, args=(theirs, received))
    reader.start()
    try:
        writer = SocketWriter(ours)
        ours.setblocking(False)
        conn = FakeConnection()
        send = ZeroCopySend(as_connection(conn), writer, b"", [FileRegion(fd, 0, size)])
        while send.advance() != DONE:
            select.select([], [writer.fd], [], 5)
        writer.close()
        ours.close()
        reader.join(10)
    finally:
        os.close(fd)
        theirs.close()
    assert bytes(received) == data
    assert len(asked) > 4  # the small buffer made partial sends
    for offset, count in asked:
        assert count == min(zerocopy.SENDFILE_CHUNK, size - offset), (offset, count)


def _drain(sock: socket.socket, into: bytearray) -> None:
    while chunk := sock.recv(1 << 16):
        into += chunk
