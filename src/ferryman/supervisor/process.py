"""One worker process as the arbiter sees it: how it is started, what it last said.

Workers are started with subprocess as a fresh interpreter
(`python -m ferryman.supervisor.child`), not forked from the arbiter:

- a fork would copy the arbiter's state (signal handlers, the selector, its
  pipes to every other worker) and every later change to the arbiter would
  have to think about what a child inherits; a fresh interpreter inherits
  exactly the descriptors in `pass_fds` (close_fds does the rest): its pipe,
  the listening socket, and with TLS the certificate and key (server/tls.py);
- a SIGHUP rolling restart then loads the code that is installed now, so an
  upgrade of everything below the arbiter needs no downtime;
- start-up costs about 0.12 s of imports per worker (uvloop, httptools),
  paid once per start, which the ordered start and the rolling restart
  absorb.

The settings travel as JSON in the environment (FERRYMAN_WORKER_CONFIG): the
worker does not parse flags, TOML or FERRYMAN_* variables again, so it runs
with exactly the Config the arbiter validated. Each worker is the leader of
its own process group, so a Ctrl-C in a terminal (SIGINT to the foreground
group) reaches only the arbiter, which then stops the workers in order.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping

from ferryman.config import Config
from ferryman.supervisor.heartbeat import Channel

CONFIG_ENV = "FERRYMAN_WORKER_CONFIG"

STARTING, READY, STOPPING = "starting", "ready", "stopping"
FILLER_SLOT = 0  # the cache filler (cache/service.py) runs in slot 0, before the workers


class Role(enum.Enum):
    """What a supervised process does: decided once, when the arbiter lays out its slots.

    A WORKER serves clients on the listening socket. The FILLER, in
    FILLER_SLOT, is the block cache's one writer: it gets no listening
    socket and no access log, is stopped after every worker (it fills for
    transfers still draining), and is never replaced beside itself in a
    rolling restart (two fillers must not share a cache directory).
    """

    WORKER = "worker"
    FILLER = "cache filler"


class Worker:
    """A spawned worker: its slot, process, pipe, and what the arbiter knows of it."""

    def __init__(self, slot: int, role: Role, number: int, proc: subprocess.Popen[bytes],
                 channel: Channel, now: float) -> None:  # fmt: skip
        self.slot = slot  # its place in the start order: FILLER_SLOT, then 1..N
        self.role = role
        self.number = number  # the how-many-th worker this arbiter started
        self.proc = proc
        self.channel = channel
        self.state = STARTING
        self.started_at = now
        self.last_sign = now  # last message of any kind: every message proves the loop ran
        self.stop_sent_at: float | None = None
        self.killed_for: str | None = None  # why the arbiter SIGKILLed it, if it did
        self.listener_closed = False
        self.loop_name = ""
        self.boot_failure: str | None = None
        self.status: int | None = None  # exit status once reaped

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def name(self) -> str:
        return f"{describe(self.role, self.slot)} (pid {self.pid})"

    def on_message(self, kind: str, text: str, now: float) -> None:
        self.last_sign = now
        if kind == "ready" and self.state == STARTING:
            self.state = READY
            self.loop_name = text
        elif kind == "closed":
            self.listener_closed = True
        elif kind == "boot-failed":
            self.boot_failure = text

    def send(self, signum: int) -> None:
        """Signal the worker unless it has been reaped (its pid may be reused then)."""
        if self.status is None:
            try:
                self.proc.send_signal(signum)
            except ProcessLookupError:
                pass

    def stop(self, now: float) -> None:
        """Ask for a graceful stop: stop accepting, drain for the grace period, exit 0."""
        if self.stop_sent_at is None:
            self.stop_sent_at = now
            self.state = STOPPING
            self.send(signal.SIGTERM)

    def kill(self, reason: str) -> None:
        if self.killed_for is None:
            self.killed_for = reason
            self.send(signal.SIGKILL)

    def reap(self) -> int | None:
        """The exit status once the process is gone (negative: killed by that signal)."""
        if self.status is None:
            self.status = self.proc.poll()
        return self.status

    def describe_exit(self) -> str:
        status = self.status
        if status is not None and status < 0:
            try:
                return f"was killed by {signal.Signals(-status).name}"
            except ValueError:
                return f"was killed by signal {-status}"
        return f"exited with status {status}"

    def close(self) -> None:
        self.channel.close()


def describe(role: Role, slot: int) -> str:
    """How the logs name the process in `slot`: "worker 3", "cache filler"."""
    return f"worker {slot}" if role is Role.WORKER else role.value


def spawn(config: Config, listen_fd: int, slot: int, role: Role, number: int, now: float,
          environ: Mapping[str, str] | None = None,
          tls_fds: tuple[int, int] | None = None) -> Worker:  # fmt: skip
    """Start a worker serving `listen_fd` (or the cache filler, which gets no listening
    socket: that is how the child knows its role); it reports on its own pipe.
    `tls_fds`: the memory files of the TLS certificate and key (server/tls.py)."""
    read_fd, write_fd = os.pipe()  # both close-on-exec; pass_fds opens write_fd to the child
    env = dict(os.environ if environ is None else environ)
    env[CONFIG_ENV] = json.dumps(dataclasses.asdict(config))
    argv = [
        sys.executable, "-m", "ferryman.supervisor.child",
        "--control-fd", str(write_fd), "--slot", str(slot), "--number", str(number),
    ]  # fmt: skip
    pass_fds = [write_fd]
    if role is Role.WORKER:
        argv += ["--listen-fd", str(listen_fd)]
        pass_fds.append(listen_fd)
        if tls_fds is not None:
            argv += ["--tls-fds", f"{tls_fds[0]},{tls_fds[1]}"]
            pass_fds += tls_fds
    try:
        proc = subprocess.Popen(
            argv, pass_fds=pass_fds, env=env, stdin=subprocess.DEVNULL, process_group=0,
        )  # fmt: skip
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)  # only the worker holds the write end: its death reads as EOF
    return Worker(slot, role, number, proc, Channel(read_fd), now)


def config_from_environ(environ: Mapping[str, str]) -> Config:
    """The worker's side of spawn(): the Config the arbiter validated."""
    data = json.loads(environ[CONFIG_ENV])
    for name, value in data.items():  # JSON has lists, not tuples (replica, compress...)
        if isinstance(value, list):
            data[name] = tuple(value)
    return Config(**data)
