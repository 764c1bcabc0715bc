"""What every connection of one worker shares: settings, the app, the
connection set, the deadline queue, the access log, the answers' tally, and
the state of a graceful stop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ferryman.app.application import Application
from ferryman.config import Config
from ferryman.http.dates import format_http_date
from ferryman.http.parser import Limits
from ferryman.metrics.tally import RequestTally
from ferryman.server.accesslog import AccessLog
from ferryman.server.deadline import Timers

if TYPE_CHECKING:
    from ferryman.server.connection import HttpConnection


class ServerContext:
    def __init__(
        self,
        config: Config,
        app: Application,
        loop: asyncio.AbstractEventLoop,
        access_log: AccessLog,
        tls: bool = False,
        tally: RequestTally | None = None,
    ) -> None:
        self.config = config
        self.tls = tls
        # sendfile() would put plaintext on a TLS socket: file bodies go through the
        # transport, which encrypts them (buffered reads), whatever --sendfile says.
        self.sendfile = config.sendfile and not tls
        self.app = app
        self.handle = app.handler()  # bound once: every request of every connection calls it
        self.loop = loop
        self.access_log = access_log
        self.tally = tally  # every answer counted, for /-/metrics (None: --metrics off)
        self.limits = Limits(
            max_request_line=config.max_request_line,
            max_header_count=config.max_header_count,
            max_header_bytes=config.max_header_bytes,
        )
        self.connections: set[HttpConnection] = set()
        self.timers = Timers(loop)  # every connection's deadline, behind one loop timer
        self.stopping = False  # keep-alive is off: every answer says Connection: close
        self.closing_idle = False  # connections not mid-response are closed, new ones too
        self.on_connection_opened: Callable[[], None] = lambda: None
        self.on_connection_closed: Callable[[], None] = lambda: None
        self._drained: asyncio.Future[None] | None = None
        self._date_second = -1
        self._date = b""

    def date_line(self) -> bytes:
        """The `Date: ...\r\n` header line, formatted once per second."""
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date = b"Date: %s\r\n" % format_http_date(now).encode("ascii")
        return self._date

    def connection_opened(self, conn: HttpConnection) -> None:
        self.connections.add(conn)
        self.on_connection_opened()
        # Accepted just before the listener closed: answer its request (with
        # Connection: close) unless the linger is over.
        if self.closing_idle:
            conn.shutdown()

    def connection_closed(self, conn: HttpConnection) -> None:
        self.connections.discard(conn)
        self.on_connection_closed()
        if not self.connections and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def stop_keepalive(self) -> None:
        """Answers from now on close their connection; nothing is closed yet."""
        self.stopping = True

    def begin_shutdown(self) -> None:
        """Stop keep-alive everywhere; idle connections close now, busy ones after their answer."""
        self.stopping = True
        self.closing_idle = True
        for conn in list(self.connections):
            conn.shutdown()

    async def wait_closed(self, within: float) -> bool:
        """Wait up to `within` seconds for every connection to close; True if they did."""
        if not self.connections:
            return True
        if self._drained is None or self._drained.done():
            self._drained = self.loop.create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._drained), within)
        except TimeoutError:
            return False
        return True

    async def wait_drained(self, grace: float) -> bool:
        """Wait for every connection to close; after `grace` seconds abort the rest."""
        if await self.wait_closed(grace):
            return True
        for conn in list(self.connections):
            conn.abort()
        # Let the aborted transfers notice, log and release their bodies.
        await self.wait_closed(1.0)
        for _ in range(3):
            await asyncio.sleep(0)
        return False
