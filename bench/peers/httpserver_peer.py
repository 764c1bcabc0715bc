"""`python -m http.server`: ThreadingHTTPServer, request log off."""

from __future__ import annotations

import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from _common import announce, parse_args


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No request log, as every other server here runs without one."""


def serve(root: str, host: str) -> None:
    handler = functools.partial(QuietHandler, directory=root)
    with ThreadingHTTPServer((host, 0), handler) as server:
        announce(server.socket)
        server.serve_forever()


if __name__ == "__main__":
    args = parse_args(__doc__)
    serve(args.root, args.host)
