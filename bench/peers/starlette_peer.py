"""Starlette StaticFiles on uvicorn with uvloop and httptools, access log off."""

from __future__ import annotations

import asyncio

import uvicorn
import uvloop
from _common import announce, bound_socket, parse_args
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles


async def serve(root: str, host: str) -> None:
    app = Starlette(routes=[Mount("/", app=StaticFiles(directory=root))])
    config = uvicorn.Config(
        app, http="httptools", lifespan="off", access_log=False, log_level="warning"
    )
    server = uvicorn.Server(config)
    sock = bound_socket(host)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    # uvicorn only exposes a flag for "startup complete".
    while not server.started and not task.done():  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    announce(sock)
    await task


if __name__ == "__main__":
    args = parse_args(__doc__)
    uvloop.run(serve(args.root, args.host))
