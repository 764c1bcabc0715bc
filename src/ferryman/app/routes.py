"""The application: which handler answers which request."""

from __future__ import annotations

from collections.abc import Awaitable

from ferryman.app.files import FileServer
from ferryman.config import Config
from ferryman.errors import HttpError
from ferryman.http.parser import Request
from ferryman.http.response import Response

READ_METHODS = frozenset(("GET", "HEAD"))
_NOT_ALLOWED = HttpError(
    405, "method_not_allowed", "this server only reads: GET and HEAD", (("Allow", "GET, HEAD"),)
)


class App:
    """Handlers return a Response, or an awaitable of one when they must wait."""

    def __init__(self, config: Config) -> None:
        self.files = FileServer(config)

    def handle(self, request: Request) -> Response | Awaitable[Response]:
        if request.method not in READ_METHODS:
            raise _NOT_ALLOWED
        return self.files.get(request)

    def close(self) -> None:
        self.files.close()
