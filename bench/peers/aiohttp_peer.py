"""aiohttp's static file route on uvloop, access log off."""

from __future__ import annotations

import asyncio

import uvloop
from _common import announce, bound_socket, parse_args
from aiohttp import web


async def serve(root: str, host: str) -> None:
    app = web.Application()
    app.router.add_static("/", root)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = bound_socket(host)
    await web.SockSite(runner, sock).start()
    announce(sock)
    await asyncio.Event().wait()


if __name__ == "__main__":
    args = parse_args(__doc__)
    uvloop.run(serve(args.root, args.host))
