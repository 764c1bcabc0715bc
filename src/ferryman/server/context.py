"""What every connection of one worker shares: settings, the app, the
connection set, the access log, and the state of a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ferryman.app.routes import App
from ferryman.config import Config
from ferryman.http.dates import format_http_date
from ferryman.http.parser import Limits
from ferryman.server.accesslog import AccessLog

if TYPE_CHECKING:
    from ferryman.server.connection import HttpConnection


class ServerContext:
    def __init__(
        self, config: Config, app: App, loop: asyncio.AbstractEventLoop, access_log: AccessLog
    ) -> None:
        self.config = config
        self.app = app
        self.loop = loop
        self.access_log = access_log
        self.limits = Limits(
            max_request_line=config.max_request_line,
            max_header_count=config.max_header_count,
            max_header_bytes=config.max_header_bytes,
        )
        self.connections: set[HttpConnection] = set()
        self.stopping = False
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
        if self.stopping:
            conn.shutdown()

    def connection_closed(self, conn: HttpConnection) -> None:
        self.connections.discard(conn)
        self.on_connection_closed()
        if not self.connections and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def begin_shutdown(self) -> None:
        """Stop keep-alive everywhere; idle connections close now, busy ones after their answer."""
        self.stopping = True
        for conn in list(self.connections):
            conn.shutdown()

    async def wait_drained(self, grace: float) -> bool:
        """Wait for every connection to close; after `grace` seconds abort the rest."""
        if self.connections:
            self._drained = self.loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._drained), grace)
            except TimeoutError:
                for conn in list(self.connections):
                    conn.abort()
                # Let the aborted transfers notice, log and release their bodies.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._drained), 1.0)
                for _ in range(3):
                    await asyncio.sleep(0)
                return False
        return True
