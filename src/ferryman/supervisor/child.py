"""A worker process's entry point: `python -m ferryman.supervisor.child` (started by process.py).

It takes the listening socket and the write end of its pipe to the arbiter
as inherited descriptors, reads its Config from the environment, and runs
the worker (ferryman.server.worker). Started without a listening socket
(Role.FILLER, process.py), it runs the cache filler instead
(ferryman.cache.service), under the same supervision: ready, heartbeat, exit
statuses. What it tells the arbiter is in heartbeat.py. Exit status: 0
after a stop, 2 after a configuration or boot failure (the arbiter then
stops instead of restarting it), anything else is a crash (restarted within
the budget).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence

from ferryman.errors import EXIT_CONFIG, ConfigError
from ferryman.server import worker
from ferryman.server.tls import context_from_fds
from ferryman.supervisor.heartbeat import Beacon
from ferryman.supervisor.hooks import FaultHooks
from ferryman.supervisor.process import CONFIG_ENV, Role, config_from_environ, describe

log = logging.getLogger("ferryman.worker")


class Supervised:
    """worker.Supervision over the pipe to the arbiter."""

    def __init__(self, beacon: Beacon, role: Role, slot: int, hooks: FaultHooks) -> None:
        self.beacon = beacon
        self.role = role
        self.slot = slot
        self.hooks = hooks

    def ready(self, loop: asyncio.AbstractEventLoop, stop: Callable[[], None], name: str) -> None:
        def orphaned() -> None:
            log.warning("%s: the arbiter is gone; stopping", describe(self.role, self.slot))
            stop()

        if self.role is Role.WORKER:  # the filler logs its own "filler ready" line
            log.info("worker %d ready (%s loop)", self.slot, name)
        if not self.beacon.send("ready", name):
            orphaned()
            return
        self.beacon.start(loop, orphaned)
        self.hooks.when_ready(loop)

    def closed(self) -> None:
        self.beacon.send("closed")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ferryman-worker")
    parser.add_argument("--listen-fd", type=int, default=None)
    parser.add_argument("--tls-fds", default=None)  # CERT,KEY: memory files (server/tls.py)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--slot", type=int, required=True)
    parser.add_argument("--number", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="ferryman[%(process)d] %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    hooks = FaultHooks.from_environ(os.environ, args.number)
    beacon = Beacon(args.control_fd)
    try:
        hooks.at_start()
        config = config_from_environ(os.environ)
        os.environ.pop(CONFIG_ENV, None)
        # The arbiter gives the filler no listening socket (process.spawn); decided here, once.
        role = Role.FILLER if args.listen_fd is None else Role.WORKER
        supervised = Supervised(beacon, role, args.slot, hooks)
        if role is Role.FILLER:
            from ferryman.cache.service import run_filler
            from ferryman.metrics.exporter import filler_flush

            return run_filler(config, supervised, filler_flush(config))
        tls = None
        if args.tls_fds is not None:
            cert_fd, key_fd = (int(fd) for fd in args.tls_fds.split(","))
            tls = context_from_fds(cert_fd, key_fd)
        sock = socket.socket(fileno=args.listen_fd)
        try:
            return worker.run(config, sock, supervised, tls)
        finally:
            sock.close()
    except ConfigError as exc:
        # The arbiter logs the reason, once, as its own "cannot start" line.
        if not beacon.send("boot-failed", str(exc)):
            log.error("cannot start: %s", exc)
        return EXIT_CONFIG
    finally:
        beacon.close()


if __name__ == "__main__":
    sys.exit(main())
