"""Many-connection clients for the idle and slow-reader workloads.

Run as a separate process pinned to the client CPU by bench/workloads.py, and
driven through stdin/stdout with one JSON object per line:

  idle: open COUNT keep-alive connections, send one GET on each and read the
        whole response, then hold them. Prints {"event": "holding", ...} once
        every connection is open (or has failed); on the line "report" on
        stdin, prints {"event": "report", "held": N, ...} and exits.
  slow: open COUNT connections with a small SO_RCVBUF, GET the big file on
        each and read it at RATE bytes/s per connection. Prints
        {"event": "ready", ...} once every stream has started; "start" on
        stdin resets the byte count, "stop" prints {"event": "report", ...}
        with what was read between the two (and `client_late_s`: reading
        time this process itself lost by falling behind), and exits.

Connections are spread over --sources loopback source addresses, and every
failure is charged to the client or to the server (bench/clientsockets.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from dataclasses import dataclass, field

from clientsockets import Failures, client_socket, raise_nofile_limit, source_addresses

try:
    import uvloop
except ImportError:  # the stdlib loop also works, only slower
    uvloop = None

CONNECT_CONCURRENCY = 200
CONNECT_TIMEOUT = 15.0
TICK = 0.1


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def stdin_line() -> str:
    return (await asyncio.to_thread(sys.stdin.readline)).strip()


def request_bytes(host: str, port: int, path: str) -> bytes:
    head = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: ferryman-bench\r\n\r\n"
    return head.encode()


# ---------------------------------------------------------------- idle ----


@dataclass
class IdleStats:
    answered: int = 0
    closed: int = 0
    failures: Failures = field(default_factory=Failures)


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one response with a Content-Length body; return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def watch_close(reader: asyncio.StreamReader, stats: IdleStats) -> None:
    """Count the connection as closed when the server closes it."""
    try:
        while await reader.read(4096):
            pass
    except OSError:
        pass
    stats.closed += 1


async def connect(
    args: argparse.Namespace, source: str | None, failures: Failures, rcvbuf: int | None = None
) -> socket.socket | None:
    """A connected socket from `source`, or None with the failure recorded."""
    try:
        sock = client_socket(source, rcvbuf)
    except OSError as exc:
        failures.add("socket", exc)
        return None
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (args.host, args.port)), CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        sock.close()
        failures.add("connect", exc)
        return None
    return sock


async def open_idle(
    args: argparse.Namespace, source: str | None, sem: asyncio.Semaphore, stats: IdleStats,
    keep: list,
) -> None:  # fmt: skip
    async with sem:
        sock = await connect(args, source, stats.failures)
        if sock is None:
            return
        reader, writer = await asyncio.open_connection(sock=sock)
        keep.append(writer)
        try:
            writer.write(request_bytes(args.host, args.port, args.path))
            status = await asyncio.wait_for(read_response(reader), CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
            stats.failures.add("response", exc)
            writer.close()
            return
        if status != 200:
            stats.failures.add("response", f"status {status}")
            writer.close()
            return
        stats.answered += 1
    keep.append(asyncio.create_task(watch_close(reader, stats)))


async def run_idle(args: argparse.Namespace) -> None:
    stats = IdleStats()
    keep: list = []
    sem = asyncio.Semaphore(CONNECT_CONCURRENCY)
    sources = source_addresses(args.host, args.sources)
    started = time.monotonic()
    tasks = [
        asyncio.create_task(open_idle(args, sources[n % len(sources)], sem, stats, keep))
        for n in range(args.count)
    ]
    _, pending = await asyncio.wait(tasks, timeout=args.open_timeout)
    for task in pending:
        task.cancel()
    emit(
        "holding",
        answered=stats.answered,
        failed=stats.failures.total,
        unfinished=len(pending),
        held=stats.answered - stats.closed,
        open_s=round(time.monotonic() - started, 2),
        sources=len(sources),
        **stats.failures.as_dict(),
    )
    await stdin_line()
    emit("report", answered=stats.answered, held=stats.answered - stats.closed, closed=stats.closed)


# ---------------------------------------------------------------- slow ----


@dataclass
class Stream:
    sock: socket.socket
    head: bytes = b""
    status: int = 0
    received: int = 0
    budget: float = 0.0
    closed: bool = False


async def open_stream(
    args: argparse.Namespace, source: str | None, sem: asyncio.Semaphore, failures: Failures
) -> Stream | None:
    loop = asyncio.get_running_loop()
    async with sem:
        sock = await connect(args, source, failures, args.rcvbuf)
        if sock is None:
            return None
        try:
            await loop.sock_sendall(sock, request_bytes(args.host, args.port, args.path))
        except OSError as exc:
            sock.close()
            failures.add("request", exc)
            return None
    return Stream(sock)


def parse_status(head: bytes) -> int:
    """The status code of an HTTP/1.x status line; -1 for anything else."""
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return -1
    return int(parts[1])


def read_budget(stream: Stream, buf: bytearray, rate: float, dt: float) -> int:
    """Read what this tick allows from one stream; return the bytes read."""
    # Bank at most two ticks of allowance: a stall (of the server or of this
    # process) is not made up for by a burst.
    stream.budget = min(stream.budget + rate * dt, rate * 2 * TICK)
    total = 0
    view = memoryview(buf)
    while stream.budget >= 1 and not stream.closed:
        try:
            n = stream.sock.recv_into(view, min(len(buf), int(stream.budget)))
        except BlockingIOError:
            break
        except OSError:
            n = 0
        if n == 0:
            stream.closed = True
            break
        if not stream.status:
            stream.head += bytes(view[:n])
            if b"\r\n" in stream.head:
                stream.status = parse_status(stream.head)
        stream.budget -= n
        stream.received += n
        total += n
    return total


class Reader:
    """One timer reads every stream at its rate: cheaper than a task each."""

    def __init__(self, streams: list[Stream], rate: float) -> None:
        self.streams = streams
        self.rate = rate
        self.window_bytes = 0
        # Seconds of reading this process lost by being late for its ticks
        # (beyond the two ticks a stream may bank): when readers get less than
        # their rate, this says whether the client or the server fell behind.
        self.late_s = 0.0
        self.running = True
        self.started = asyncio.Event()  # set once every stream has a status or closed

    def start_window(self) -> None:
        self.window_bytes = 0
        self.late_s = 0.0

    async def run(self) -> None:
        buf = bytearray(256 * 1024)
        last = time.monotonic()
        while self.running:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            self.late_s += max(0.0, now - last - 2 * TICK)
            for stream in self.streams:
                self.window_bytes += read_budget(stream, buf, self.rate, now - last)
            last = now
            if all(s.status or s.closed for s in self.streams):
                self.started.set()


async def run_slow(args: argparse.Namespace) -> None:
    sem = asyncio.Semaphore(CONNECT_CONCURRENCY)
    sources = source_addresses(args.host, args.sources)
    failures = Failures()
    started = time.monotonic()
    opened = await asyncio.gather(
        *(open_stream(args, sources[n % len(sources)], sem, failures) for n in range(args.count))
    )
    streams = [s for s in opened if s is not None]
    reader = Reader(streams, args.rate)
    reader_task = asyncio.create_task(reader.run())
    try:
        await asyncio.wait_for(reader.started.wait(), CONNECT_TIMEOUT)
    except TimeoutError:
        pass  # reported: the streams without a status count as not ok
    emit(
        "ready",
        connected=len(streams),
        failed=args.count - len(streams),
        ok=sum(s.status == 200 for s in streams),
        statuses=sorted({s.status for s in streams}),
        open_s=round(time.monotonic() - started, 2),
        sources=len(sources),
        **failures.as_dict(),
    )
    await stdin_line()
    reader.start_window()
    window_start = time.monotonic()
    await stdin_line()
    window = time.monotonic() - window_start
    emit(
        "report",
        window_s=round(window, 3),
        bytes=reader.window_bytes,
        client_late_s=round(reader.late_s, 3),
        open=sum(not s.closed for s in streams),
        ok=sum(s.status == 200 and not s.closed for s in streams),
    )
    reader.running = False
    await reader_task
    for stream in streams:
        stream.sock.close()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["idle", "slow"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, default=64 * 1024)
    parser.add_argument("--rcvbuf", type=int, default=16 * 1024)
    parser.add_argument("--open-timeout", type=float, default=180.0)
    parser.add_argument("--sources", type=int, default=8, help="loopback source addresses")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    raise_nofile_limit(args.count, margin=256)
    coro = run_idle(args) if args.mode == "idle" else run_slow(args)
    if uvloop is not None:
        uvloop.run(coro)
    else:
        asyncio.run(coro)


if __name__ == "__main__":
    main()
