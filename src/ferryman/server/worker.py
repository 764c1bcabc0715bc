"""One serving process: bind, accept, serve until told to stop, drain, exit.

Signal handlers only set an event; the coroutine that waits on it does the
stopping: close the listener, end keep-alive, let in-flight transfers finish
for up to the grace period, abort what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import socket

from ferryman.app.routes import App
from ferryman.config import Config
from ferryman.errors import ConfigError
from ferryman.server.accesslog import AccessLog
from ferryman.server.connection import HttpConnection
from ferryman.server.context import ServerContext
from ferryman.server.listener import Listener

log = logging.getLogger("ferryman")

_FD_HEADROOM = 64  # descriptors beyond the connections: listener, logs, the loop's own
_FDS_PER_CONNECTION = 3  # its socket, the file being sent, the socket's duplicate for sendfile


def bind(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """The listening socket; a clear ConfigError when the address cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve --host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def raise_fd_limit(max_connections: int) -> int:
    """Lift the soft descriptor limit toward what max_connections needs; returns what fits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_connections * _FDS_PER_CONNECTION + _FD_HEADROOM
    if soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    fits = max(1, (soft - _FD_HEADROOM) // _FDS_PER_CONNECTION)
    if fits < max_connections:
        log.warning(
            "descriptor limit %d allows %d connections, not --max-connections %d",
            soft, fits, max_connections,
        )  # fmt: skip
        return fits
    return max_connections


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ConfigError("--loop uvloop: uvloop is not installed") from None
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


def run(config: Config) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit status."""
    root = config.root
    if not root.is_dir() or not os.access(root, os.R_OK | os.X_OK):
        raise ConfigError(f"SOURCE {config.source!r} is not a readable directory")
    sock = bind(config.host, config.port)
    loop = new_event_loop(config.loop)
    try:
        return loop.run_until_complete(serve(config, sock))
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


async def serve(config: Config, sock: socket.socket) -> int:
    loop = asyncio.get_running_loop()
    try:
        app = App(config)
    except OSError as exc:
        raise ConfigError(f"cannot open SOURCE {config.source!r}: {exc.strerror}") from None
    access_log = AccessLog(config.access_log, config.access_log_format)
    ctx = ServerContext(config, app, loop, access_log)
    max_connections = raise_fd_limit(config.max_connections)
    listener = Listener(
        loop, sock, lambda: HttpConnection(ctx), lambda: len(ctx.connections), max_connections
    )
    ctx.on_connection_closed = listener.connection_closed
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, access_log.reopen)
    flusher = loop.create_task(_flush_every_second(access_log))
    listener.start()
    log.info("listening on %s (serving %s, %s loop)", url_of(sock), config.root,
             type(loop).__module__.split(".")[0])  # fmt: skip
    try:
        await stop.wait()
        log.info("stopping: %d connection(s) open, grace period %ss",
                 len(ctx.connections), config.grace_period)  # fmt: skip
        listener.close()
        ctx.begin_shutdown()
        if not await ctx.wait_drained(config.grace_period):
            log.warning("grace period over: aborted the transfers still running")
        log.info("stopped")
        return 0
    finally:
        flusher.cancel()
        access_log.close()
        app.close()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)


async def _flush_every_second(access_log: AccessLog) -> None:
    while True:
        await asyncio.sleep(1)
        access_log.flush()
