"""The listening socket: binding it, and accepting with backpressure and backoff.

The arbiter binds once (`bind`) and every worker accepts on a copy of the
same socket, one accept queue for all (docs/decisions/0006).

With TLS (server/tls.py), each accepted socket is handed to the event loop
with the worker's SSLContext; the loop runs the handshake and only then
makes the connection. A handshake gets --header-timeout, and one that fails
(a plain-HTTP client, an old TLS version, a client that sent nothing) costs
that connection alone and one line in the log. Connections in their
handshake count against `max_connections`, so a flood of half-open
handshakes is held to it and each is dropped at its deadline.

Two ways to accept. A worker alone on its socket, serving plain HTTP on
uvloop (the default), lets the loop accept: libuv's accept, in C, makes
each transport with no Python in between, 11-18% less CPU per new
connection (docs/decisions/0047). Everywhere else the listener accepts
itself: a worker sharing its socket takes one connection per turn so that a
burst spreads over the workers, and with TLS each socket is handed to the
loop for its handshake, whose failures the listener logs.

At `max_connections` the listener stops accepting (the kernel's backlog holds
new clients until a slot frees) rather than accepting and dropping. When the
process runs out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM)
it stops for 100 ms and tries again, as trio does, instead of spinning or
crashing; other accept errors concern one client and are skipped. The loop's
own accept, on EMFILE or ENFILE, closes the connections waiting in the
backlog (libuv's reserve-descriptor trick) and goes on; on any other failure
it stops its server without a word, which the listener notices within
`_WATCH` and answers as above: a pause, then a new server.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ferryman.errors import ConfigError

if TYPE_CHECKING:
    # Annotations only: the arbiter imports bind() from here, runs no event loop,
    # and keeps asyncio and ssl out of its memory (decisions/0046).
    import asyncio
    import ssl

log = logging.getLogger("ferryman.listener")

_RESOURCE_ERRORS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
_BACKOFF = 0.1
# How often the loop's own server is looked at: it stops on an accept error
# without telling anyone, and a worker that no longer accepts looks healthy.
_WATCH = 0.5
BACKLOG = 1024  # the kernel's queue of connections not yet accepted
# Accepts per readiness event. Alone on its socket, a worker takes up to 64 at
# once (one loop turn per accept halved the connection rate of a single worker).
# Sharing the socket, it takes one: a burst of new connections then spreads over
# the workers instead of landing whole on whichever woke first (docs/decisions/0006).
BATCH_ALONE, BATCH_SHARED = 64, 1


def bind(host: str, port: int, backlog: int = BACKLOG) -> socket.socket:
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


def url_of(sock: socket.socket, tls: bool = False) -> str:
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


@dataclass(frozen=True)
class Tls:
    """How a worker's connections are wrapped in TLS."""

    context: ssl.SSLContext
    handshake_timeout: float  # --header-timeout: a stalled handshake is dropped after it
    shutdown_timeout: float  # --send-timeout: the close_notify exchange at the end

    def connect_args(self) -> dict[str, Any]:
        return {
            "ssl": self.context,
            "ssl_handshake_timeout": self.handshake_timeout,
            "ssl_shutdown_timeout": self.shutdown_timeout,
        }


class Listener:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        open_connections: Callable[[], int],
        max_connections: int,
        batch: int = BATCH_ALONE,
        tls: Tls | None = None,
    ) -> None:
        self.loop = loop
        self.tls = tls
        self._connect_args = tls.connect_args() if tls is not None else {}
        self.sock = sock
        self.protocol_factory = protocol_factory
        self.open_connections = open_connections
        self.max_connections = max_connections
        self.batch = batch
        # Accepted, transport not made yet. The tasks are held here: the loop
        # keeps only weak references, and close() waits for them.
        self.setting_up: set[asyncio.Task[None]] = set()
        self.accepting = False
        self.closed = False
        self._backoff: asyncio.TimerHandle | None = None
        # What every accepted socket is, read once: socket.accept() and .family turn
        # them into enums again for each connection (a tenth of a connection's setup).
        self._kind = (int(sock.family), int(sock.type), sock.proto)
        # The loop accepts by itself when nothing needs the listener's own accept
        # (the module's docstring says when). Its server works on a copy of the
        # listening socket: closing the server to pause closes the copy, while the
        # socket itself, and the clients queued on it, stay.
        self.loop_accepts = (
            tls is None and batch == BATCH_ALONE and type(loop).__module__.startswith("uvloop")
        )
        self._server: asyncio.AbstractServer | None = None
        self._serving: socket.socket | None = None  # the copy it accepts on
        self._opening: asyncio.Task[None] | None = None
        self._watch: asyncio.TimerHandle | None = None
        # Made by the loop's server, connection_made not run yet: they count
        # against the limit as setting_up does for the listener's own accepts.
        self._unopened = 0
        self._pause_queued = False

    def start(self) -> None:
        self.sock.setblocking(False)
        self._resume()

    async def close(self) -> None:
        """Stop accepting; return once every connection already accepted is set up.

        A connection accepted in the same loop turn as the stop is still being
        set up: it is not yet among the open connections, so a drain that
        looked then would miss it. It would be served by a worker already
        tearing down, or dropped unanswered when the process exits.
        """
        from asyncio import sleep  # loaded already in a worker; see the imports

        self.closed = True
        self._pause()
        if self._backoff is not None:
            self._backoff.cancel()
        self.sock.close()
        if self._opening is not None:
            await self._opening  # it sees the stop and closes what it made
        if self._unopened:
            # The loop's server queued their connection_made before this
            # returned to the loop: one turn runs them.
            await sleep(0)
        if self.tls is not None:
            # A handshake may take --header-timeout: nothing was promised to its client
            # yet, so it ends now rather than hold up the stop.
            for setup in list(self.setting_up):
                setup.cancel()
        for setup in list(self.setting_up):
            await setup  # never raises: _start handles a failed or cancelled setup

    def connection_opened(self) -> None:
        """A connection's connection_made ran: it counts among the open ones now."""
        if self._unopened:
            self._unopened -= 1

    def connection_closed(self) -> None:
        """A slot freed: accept again if the limit had paused us."""
        if not self.accepting and self._backoff is None and not self._at_limit():
            self._resume()

    def _started(self, setup: asyncio.Task[None]) -> None:
        """A pending connection is set up (or failed): it no longer counts twice."""
        self.setting_up.discard(setup)
        # connection_made (which adds the connection to the open count) runs
        # before the setup task ends, so for a moment the connection counts both
        # as pending and as open. A pause decided in that moment is lifted
        # here, or the listener would stay paused below the limit until some
        # connection closed: 9,985 of 10,000 idle connections were served that way.
        self.connection_closed()

    def _at_limit(self) -> bool:
        pending = len(self.setting_up) + self._unopened
        return self.open_connections() + pending >= self.max_connections

    def _resume(self) -> None:
        if not self.closed and not self.accepting:
            self.accepting = True
            if not self.loop_accepts:
                self.loop.add_reader(self.sock.fileno(), self._on_readable)
            elif self._opening is None:  # one already on its way sees accepting again
                self._open_server()

    def _pause(self) -> None:
        if self.accepting:
            self.accepting = False
            if not self.loop_accepts:
                self.loop.remove_reader(self.sock.fileno())
            elif self._server is not None:
                self._server.close()
                self._let_go_of_server()

    def _back_off(self, reason: str) -> None:
        log.warning("accept failed (%s); pausing %.0f ms", reason, _BACKOFF * 1000)
        self._pause()
        self._backoff = self.loop.call_later(_BACKOFF, self._end_backoff)

    def _end_backoff(self) -> None:
        self._backoff = None
        if not self._at_limit():
            self._resume()

    # -- the listener's own accept ----------------------------------------------

    def _on_readable(self) -> None:
        for _ in range(self.batch):
            if self._at_limit():
                self._pause()
                return
            try:
                # The descriptor alone (what socket.accept() wraps): the socket is
                # made below from what the listener already knows.
                fd, peer = self.sock._accept()  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRORS:
                    self._back_off(exc.strerror or str(exc))
                    return
                continue  # ECONNABORTED and friends: that client is gone
            conn = socket.socket(*self._kind, fileno=fd)
            setup = self.loop.create_task(self._start(conn, peer))
            self.setting_up.add(setup)
            setup.add_done_callback(self._started)

    async def _start(self, conn: socket.socket, peer: Any) -> None:
        from asyncio import CancelledError  # loaded already in a worker; see the imports

        try:
            # The loop makes the socket non-blocking and sets TCP_NODELAY itself
            # (uvloop and asyncio alike): not twice.
            await self.loop.connect_accepted_socket(
                self.protocol_factory, conn, **self._connect_args
            )
        except OSError as exc:
            if self.tls is not None:
                log_handshake_failure(peer, exc)
            else:
                log.debug("connection setup failed: %s", exc)
            conn.close()
        except CancelledError:  # close() ended a handshake
            conn.close()

    # -- the loop's own accept --------------------------------------------------

    def _open_server(self) -> None:
        try:
            copy = self.sock.dup()
        except OSError as exc:
            self._back_off(exc.strerror or str(exc))
            return
        self._opening = self.loop.create_task(self._serve_on(copy))

    async def _serve_on(self, copy: socket.socket) -> None:
        server = None
        try:
            if self.accepting:
                server = await self.loop.create_server(self._made, sock=copy, backlog=BACKLOG)
        except OSError as exc:
            self._opening = None
            copy.close()
            self._back_off(exc.strerror or str(exc))
            return
        self._opening = None
        if server is not None and self.accepting:
            self._server, self._serving = server, copy
            self._watch = self.loop.call_later(_WATCH, self._look)
            return
        if server is not None:  # paused or stopped while it was being made
            server.close()
        copy.close()

    def _made(self) -> asyncio.Protocol:
        """The loop's server accepted a connection: its protocol."""
        self._unopened += 1
        if self._at_limit() and not self._pause_queued:
            # Not from inside libuv's accept: closing the server there closes the
            # connection just accepted and breaks uvloop's bookkeeping. libuv
            # accepts one connection per turn of the loop, so the pause runs
            # before the next one and the limit holds exactly.
            self._pause_queued = True
            self.loop.call_soon(self._pause_if_full)
        return self.protocol_factory()

    def _pause_if_full(self) -> None:
        self._pause_queued = False
        if self._at_limit():
            self._pause()

    def _look(self) -> None:
        """The loop's server stops on an accept error it does not report: start again."""
        self._watch = None
        if self._serving is None:
            return
        if self._serving.fileno() != -1:
            self._watch = self.loop.call_later(_WATCH, self._look)
            return
        self.accepting = False
        if self._server is not None:
            self._server.close()  # its handle is closed already; this lets the loop drop it
        self._let_go_of_server()
        self._unopened = 0  # made by now, or lost with the server
        self._back_off("the event loop stopped its server")

    def _let_go_of_server(self) -> None:
        self._server = None
        self._serving = None
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None


def log_handshake_failure(peer: Any, exc: OSError) -> None:
    """One line for a TLS handshake that failed: the client's own affair, never a traceback.

    INFO for what an operator can act on (a client speaking plain HTTP, or an
    old protocol; a client that never finished its handshake); DEBUG for a
    client that went away.
    """
    who = peer[0] if isinstance(peer, tuple) else "a client"
    reason = getattr(exc, "reason", None)
    if reason == "UNEXPECTED_EOF_WHILE_READING" or isinstance(exc, ConnectionResetError):
        log.debug("TLS handshake with %s failed: the client left", who)
    elif reason == "HTTP_REQUEST":
        log.info("TLS handshake with %s failed: it sent a plain HTTP request", who)
    elif reason is not None:
        log.info("TLS handshake with %s failed: %s", who, reason.lower().replace("_", " "))
    elif isinstance(exc, ConnectionAbortedError):  # the loop's handshake timeout
        log.info("TLS handshake with %s failed: not finished within --header-timeout", who)
    else:
        log.debug("TLS handshake with %s failed: %s", who, exc)
