"""One serving process: accept on a socket it was given, serve until told to stop, drain.

The arbiter (ferryman.supervisor) binds the socket and starts this code in
each worker process; `Supervision` is how the worker tells it that it is
ready, that it beats, and that it stopped accepting.

Signal handlers only set an event; the coroutine that waits on it does the
stopping, in this order:

1. close the listener (the shared socket stays open in the arbiter and the
   other workers, so clients in the accept queue are taken by them);
2. keep-alive off: every answer from now on says `Connection: close`, so a
   client that sends its next request now gets it answered and is told to
   reconnect, rather than finding its connection closed under its request;
3. after a short linger (1 s, at most the grace period), close the
   connections that are still idle;
4. let in-flight transfers finish for what is left of the grace period, then
   abort the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import resource
import signal
import socket
import ssl
from collections.abc import Callable
from typing import Protocol

from ferryman.app.application import Application
from ferryman.boot import check_source
from ferryman.config import Config
from ferryman.errors import EXIT_OK, ConfigError
from ferryman.failures import log_loop_failure
from ferryman.loops import new_event_loop
from ferryman.metrics.exporter import WorkerMetrics, directory
from ferryman.metrics.tally import RequestTally
from ferryman.server.accesslog import AccessLog
from ferryman.server.connection import HttpConnection
from ferryman.server.context import ServerContext
from ferryman.server.listener import BATCH_ALONE, BATCH_SHARED, Listener, Tls

log = logging.getLogger("ferryman")

_FD_HEADROOM = 64  # descriptors beyond the connections: listener, logs, the loop's own
_FDS_PER_CONNECTION = 3  # its socket, the file being sent, the socket's duplicate for sendfile
# An idle connection holds one descriptor; only transfers hold the other two,
# and running short of those degrades gracefully (503 on open, a buffered copy
# without a duplicate). So connections are counted at one descriptor each,
# with this many kept back for transfers.
_FDS_FOR_TRANSFERS = 1024
# Idle keep-alive connections get this long to send one more request (answered
# with Connection: close) before they are closed. Long enough for a busy client
# whose next request is already on the wire; short next to any grace period.
KEEPALIVE_LINGER = 1.0
# Young containers (made, not yet freed) that trigger a collection (Python's default: 700);
# at most this many objects in garbage cycles wait for one.
YOUNG_OBJECTS = 5000


class Supervision(Protocol):
    """What the worker tells its supervisor (implemented in ferryman.supervisor.child)."""

    def ready(self, loop: asyncio.AbstractEventLoop, stop: Callable[[], None], name: str) -> None:
        """The listener accepts. `stop` starts a graceful stop; `name` is the loop's."""

    def closed(self) -> None:
        """The listener is closed: the worker is draining."""


def raise_fd_limit(max_connections: int, kept_files: int) -> int:
    """Lift the soft descriptor limit toward what max_connections needs; returns what fits.

    Asks for room for every connection to be transferring at once, plus the
    `kept_files` descriptors of --open-files, and settles for one descriptor
    per connection plus a reserve for transfers.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    reserved = _FD_HEADROOM + kept_files
    want = max_connections * _FDS_PER_CONNECTION + reserved
    if soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    # Never more kept back for transfers than all the connections could use.
    transfers = min(_FDS_FOR_TRANSFERS, max_connections * (_FDS_PER_CONNECTION - 1))
    fits = max(1, soft - reserved - transfers)
    if fits < max_connections:
        log.warning(
            "descriptor limit %d allows %d connections, not --max-connections %d",
            soft, fits, max_connections,
        )  # fmt: skip
        return fits
    return max_connections


def run(
    config: Config,
    sock: socket.socket,
    supervision: Supervision,
    tls: ssl.SSLContext | None = None,
) -> int:
    """Serve on `sock` until SIGTERM or SIGINT; returns the exit status.

    The arbiter checked every resource before this worker was started
    (ferryman/boot.py); what changed since is a ConfigError here too, which
    the arbiter hears as boot-failed. With `tls`, every connection is HTTPS.
    """
    check_source(config)
    loop = new_event_loop(config.loop)
    loop.set_exception_handler(_loop_failure)
    try:
        return loop.run_until_complete(serve(config, sock, supervision, tls))
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


async def serve(
    config: Config,
    sock: socket.socket,
    supervision: Supervision,
    tls: ssl.SSLContext | None = None,
) -> int:
    loop = asyncio.get_running_loop()
    try:
        app = Application(config)
    except OSError as exc:
        what = exc.filename if exc.filename is not None else config.source
        raise ConfigError(f"cannot open {what}: {exc.strerror}") from None
    access_log = AccessLog(config.access_log, config.access_log_format)
    metrics = _metrics(config)
    tally = RequestTally() if metrics is not None else None
    ctx = ServerContext(config, app, loop, access_log, tls=tls is not None, tally=tally)
    max_connections = raise_fd_limit(config.max_connections, config.open_files)
    batch = BATCH_SHARED if config.workers > 1 else BATCH_ALONE
    wrap = None if tls is None else Tls(tls, config.header_timeout, config.send_timeout)
    listener = Listener(
        loop, sock, lambda: HttpConnection(ctx), lambda: len(ctx.connections), max_connections,
        batch, wrap,
    )  # fmt: skip
    ctx.on_connection_opened = listener.connection_opened
    ctx.on_connection_closed = listener.connection_closed
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    for signum in (signal.SIGHUP, signal.SIGUSR1):
        loop.add_signal_handler(signum, access_log.reopen)
    await app.prepare()
    flusher = loop.create_task(_every_second(ctx, metrics))
    settle_collector()
    listener.start()
    supervision.ready(loop, stop.set, type(loop).__module__.split(".")[0])
    try:
        await stop.wait()
        await listener.close()
        supervision.closed()
        log.info("draining: %d connection(s) open, grace period %ss",
                 len(ctx.connections), config.grace_period)  # fmt: skip
        if not await drain(ctx, config.grace_period):
            log.warning("grace period over: aborted the transfers still running")
        log.info("worker stopped")
        return EXIT_OK
    finally:
        flusher.cancel()
        access_log.close()
        if metrics is not None and tally is not None:  # the last second's answers too
            cache = app.cache.stats if app.cache is not None else None
            metrics.flush(tally.take(), 0, cache)
        await app.aclose()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            loop.remove_signal_handler(signum)


def settle_collector() -> None:
    """Keep the cyclic garbage collector out of the way of serving, once started.

    What starting made (modules, settings, tables) lives as long as the worker:
    frozen, a full collection no longer walks it. And a connection's objects are
    freed by their reference counts when it closes (its parser and deadline let go
    of their callbacks), so young collections would find next to nothing: they run
    when YOUNG_OBJECTS containers more than were freed have been made, not 700.
    With Connection: close this took the collector's share of a worker's CPU from
    about 7% to none measurable (docs/performance.md).
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_OBJECTS, middle, old)


async def drain(ctx: ServerContext, grace: float) -> bool:
    """Steps 2 to 4 of the stop; False when transfers had to be aborted."""
    started = ctx.loop.time()
    ctx.stop_keepalive()
    if await ctx.wait_closed(min(KEEPALIVE_LINGER, grace)):
        return True
    ctx.begin_shutdown()
    return await ctx.wait_drained(max(0.0, grace - (ctx.loop.time() - started)))


def _loop_failure(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """An exception no handler caught (a protocol callback, a forgotten task): one line,
    where asyncio would log a traceback."""
    log_loop_failure(log, context)


def _metrics(config: Config) -> WorkerMetrics | None:
    """This worker's metric values, in the run's directory the arbiter made (metrics/)."""
    if not config.metrics or directory() is None:
        return None
    return WorkerMetrics()


async def _every_second(ctx: ServerContext, metrics: WorkerMetrics | None) -> None:
    app = ctx.app
    while True:
        await asyncio.sleep(1)
        ctx.access_log.flush()
        app.tick()
        if metrics is not None and ctx.tally is not None:
            cache = app.cache.stats if app.cache is not None else None
            metrics.flush(ctx.tally.take(), len(ctx.connections), cache)
