"""Tornado's StaticFileHandler (asyncio loop, Tornado's default)."""

from __future__ import annotations

import asyncio

import tornado.httpserver
import tornado.netutil
import tornado.web
from _common import announce, parse_args


async def serve(root: str, host: str) -> None:
    app = tornado.web.Application([(r"/(.*)", tornado.web.StaticFileHandler, {"path": root})])
    sockets = tornado.netutil.bind_sockets(0, host)
    tornado.httpserver.HTTPServer(app).add_sockets(sockets)
    announce(sockets[0])
    await asyncio.Event().wait()


if __name__ == "__main__":
    args = parse_args(__doc__)
    asyncio.run(serve(args.root, args.host))
