"""The arbiter: the process that owns the listening socket and keeps the workers alive.

A small supervision tree. The socket is bound first (a port in use is a boot
failure, before any worker exists); then N permanent workers start in slot
order, each one only once the one before reported ready, and stop in
reverse order. Connections are the workers' business (temporary children
of a worker, isolated from each other).

- Any exit of a worker that nobody asked for gets a replacement at once,
  counted against the restart budget (budget.py): one restart too many
  stops every worker and exits with status 3.
- A worker that exits with status 2 before it is ready could not boot (bad
  configuration, unreadable SOURCE, unopenable log): no restart would help,
  so the arbiter stops and exits 2. During a rolling restart the old
  workers are kept instead.
- A worker whose event loop sends no heartbeat for --heartbeat-timeout is
  killed (SIGKILL) and replaced; one that does not become ready within
  max(--heartbeat-timeout, 30 s) too.
- SIGTERM/SIGINT: graceful stop. SIGHUP: rolling restart (with TLS, the
  certificate and key read again first: server/tls.py). SIGUSR1: reopen
  the access logs. Handlers only append to a queue and wake the loop (the
  wakeup fd); the loop below does everything, so no handler ever runs
  half-way through a state change.

The loop is a plain selector over one pipe per worker plus the wakeup fd,
woken at least every 0.25 s for the timers. It is not asyncio: the arbiter
serves no clients, and a loop of its own keeps its signal handling and
child reaping free of the event loop's policies.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import selectors
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from ferryman import boot, native
from ferryman.app.spool import Spool
from ferryman.app.staging import stagings
from ferryman.config import Config
from ferryman.errors import EXIT_BUDGET, EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, ConfigError
from ferryman.metrics.rundir import DIRECTORY_ENV, ArbiterMetrics, make_run_dir, remove_run_dir
from ferryman.server.listener import bind, url_of
from ferryman.supervisor.budget import RestartBudget
from ferryman.supervisor.process import (
    FILLER_SLOT,
    READY,
    STARTING,
    Role,
    Worker,
    describe,
    spawn,
)

if TYPE_CHECKING:
    from ferryman.server.tls import Certificates

log = logging.getLogger("ferryman.arbiter")

STOP_MARGIN = 5.0  # after the grace period, before a worker that has not exited is killed
MIN_START_TIMEOUT = 30.0  # a start includes imports, which a busy machine can slow down
_TICK = 0.25  # longest sleep of the loop: timer resolution
_CLOSE_REPORT_WAIT = 2.0  # log "stopping" by then even if a worker never said it closed
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD)

BOOTING, RUNNING, STOPPING = "booting", "running", "stopping"


def _log_missing_codings(config: Config) -> None:
    """A coding asked for whose library is not installed is not offered: say so once."""
    for coding, package in (("zstd", "zstandard"), ("br", "brotli")):
        if coding in config.compress and importlib.util.find_spec(package) is None:
            log.warning("compression: %s is not offered (the %s package is not installed)",
                        coding, package)  # fmt: skip


def serve(config: Config) -> int:
    """`ferryman serve`: the boot step, bind, run the arbiter; returns the exit status.

    Every resource is checked before the port is bound (ferryman/boot.py), and
    the store, the slowest check, once it is; a failure is a ConfigError
    (exit status 2) before any worker exists.
    """
    certificates = boot.check_resources(config)
    _log_missing_codings(config)
    try:
        sock = bind(config.host, config.port)
        log.info("state directory %s (%s)", *config.state_choice)
        if certificates is not None:
            log.info("TLS certificate %s", certificates.describe())
        try:
            boot.check_store(config)
            # What a killed server left; no worker runs yet.
            Spool.of(config).sweep()
            for staging in stagings(config):
                staging.sweep()
            metrics = _metrics(config)
            arbiter = Arbiter(config, sock, certificates=certificates, metrics=metrics)
            try:
                return arbiter.run()
            finally:
                certificates = arbiter.certificates  # SIGHUP may have replaced them
                if metrics is not None:
                    remove_run_dir(metrics.run)
        finally:
            sock.close()
    finally:
        if certificates is not None:
            certificates.close()


def _metrics(config: Config) -> ArbiterMetrics | None:
    """This run's metrics directory (the workers inherit where it is), or None with
    --metrics off."""
    if not config.metrics:
        os.environ.pop(DIRECTORY_ENV, None)  # not another program's directory either
        return None
    state = config.state_path
    try:
        run = make_run_dir(state, os.getpid())
    except OSError as exc:
        raise ConfigError(
            f"state directory {state}: cannot make the metrics directory ({exc.strerror});"
            " give --state-dir a directory ferryman may write in, or --metrics off"
        ) from None
    return ArbiterMetrics(run)


class Arbiter:
    def __init__(
        self,
        config: Config,
        sock: socket.socket,
        clock: Callable[[], float] = time.monotonic,
        certificates: Certificates | None = None,
        metrics: ArbiterMetrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.sock = sock
        self.certificates = certificates  # what every worker started from now on serves
        self.clock = clock
        self.budget = RestartBudget(config.max_restarts, config.restart_window)
        self.spool = Spool.of(config)
        self.stagings = stagings(config)
        # What runs in each slot, in start order: decided here, once.
        self.roles: dict[int, Role] = {}
        if config.is_remote and config.cache_dir:
            self.roles[FILLER_SLOT] = Role.FILLER
        self.roles.update(dict.fromkeys(range(1, config.workers + 1), Role.WORKER))
        self.slots: dict[int, Worker | None] = dict.fromkeys(self.roles)
        self.successors: dict[int, Worker] = {}  # rolling restart: the slot's next worker
        self.workers: list[Worker] = []  # every worker not yet reaped, in start order
        self.signals: deque[int] = deque()
        self.phase = BOOTING
        self.status = EXIT_OK
        self.spawned = 0
        self.roll: deque[int] = deque()  # slots still to replace in this rolling restart
        self.roll_again = False
        self.stop_began = 0.0
        self.stop_announced = False
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()

    # -- the loop -------------------------------------------------------------------

    def run(self) -> int:
        previous = self._install_signals()
        try:
            while self.workers or self.phase != STOPPING:
                self._advance()
                self._wait()
                self._dispatch_signals()
                self._reap()
                self._check_timers()
            log.info("stopped" if self.status == EXIT_OK else f"stopped (status {self.status})")
            return self.status
        finally:
            for worker in reversed(self.workers):  # only after a bug in the arbiter itself
                worker.send(signal.SIGTERM)
                worker.close()
            signal.set_wakeup_fd(-1)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _install_signals(self) -> dict[int, signal._HANDLER]:
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        return {signum: signal.signal(signum, self._enqueue) for signum in _SIGNALS}

    def _enqueue(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)  # nothing else here: the loop acts

    def _wait(self) -> None:
        for key, _ in self.selector.select(_TICK):
            if key.data is None:
                while True:
                    try:
                        if not os.read(self._wake_r, 512):
                            break
                    except BlockingIOError:
                        break
                continue
            self._read(key.data)

    def _read(self, worker: Worker) -> None:
        now = self.clock()
        for kind, text in worker.channel.read():
            was_starting = worker.state == STARTING
            worker.on_message(kind, text, now)
            if kind == "ready" and was_starting and worker.stop_sent_at is None:
                self._on_ready(worker)
        if worker.channel.eof:
            self._forget_channel(worker)

    def _forget_channel(self, worker: Worker) -> None:
        try:
            self.selector.unregister(worker.channel)
        except (KeyError, ValueError):
            pass

    # -- starting and replacing -------------------------------------------------------

    def _spawn(self, slot: int) -> Worker:
        self.spawned += 1
        role = self.roles[slot]
        tls_fds = None if self.certificates is None else self.certificates.fds
        worker = spawn(self.config, self.sock.fileno(), slot, role, self.spawned, self.clock(),
                       tls_fds=tls_fds)  # fmt: skip
        self.workers.append(worker)
        self.selector.register(worker.channel, selectors.EVENT_READ, worker)
        log.info("started %s", worker.name)
        return worker

    def _start(self, slot: int) -> Worker | None:
        """Spawn, or count a failure to spawn (fork or exec refused) like a crash."""
        try:
            return self._spawn(slot)
        except OSError as exc:
            what = describe(self.roles[slot], slot)
            self._count_restart(f"{what} could not be started ({exc})")
            return None

    def _advance(self) -> None:
        """Start whatever should be running and is not: ordered at boot, at once later."""
        if self.phase == BOOTING:
            for slot, worker in self.slots.items():
                if worker is None:
                    worker = self.slots[slot] = self._start(slot)
                if worker is None or worker.state != READY:
                    return  # the next slot starts once this one is ready
            self.phase = RUNNING
            loop_name = self.slots[1].loop_name if self.slots[1] else "?"
            log.info("listening on %s (serving %s, %d worker(s), %s loop, request path %s)",
                     url_of(self.sock, tls=self.certificates is not None), self._source(),
                     self.config.workers,
                     loop_name, native.STATUS)  # fmt: skip
        if self.phase != RUNNING:
            return
        if not self.roll and self.roll_again:
            self.roll_again = False
            self.roll.extend(self._worker_slots())
        if self.roll and self.roll[0] not in self.successors:
            successor = self._start(self.roll[0])
            if successor is not None:
                self.successors[self.roll[0]] = successor
        for slot, worker in self.slots.items():
            if worker is None and slot not in self.successors and self.phase == RUNNING:
                self.slots[slot] = self._start(slot)

    def _source(self) -> str:
        return self.config.source if self.config.is_remote else str(self.config.root)

    def _worker_slots(self) -> list[int]:
        """The slots a rolling restart replaces: the workers, not the cache filler.

        Two fillers must never serve one cache directory at once (only one writes),
        so the filler is not replaced beside itself; it keeps running.
        """
        return [slot for slot, role in self.roles.items() if role is Role.WORKER]

    def _on_ready(self, worker: Worker) -> None:
        slot = worker.slot
        if self.successors.get(slot) is not worker:
            return
        # The new worker accepts on the shared socket; only now does the old one stop.
        del self.successors[slot]
        old, self.slots[slot] = self.slots[slot], worker
        if old is not None:
            log.info("retiring %s: %s took its place", old.name, worker.name)
            old.stop(self.clock())
        if self.roll and self.roll[0] == slot:
            self.roll.popleft()
            if not self.roll:
                log.info("rolling restart done: %d new worker(s) serving", self.config.workers)

    # -- signals --------------------------------------------------------------------------

    def _dispatch_signals(self) -> None:
        while self.signals:
            signum = self.signals.popleft()
            name = signal.Signals(signum).name
            if signum in (signal.SIGTERM, signal.SIGINT):
                if self.phase != STOPPING:
                    log.info("%s received: graceful stop, in reverse start order", name)
                    self.stop(EXIT_OK)
            elif signum == signal.SIGHUP:
                self._rolling_restart()
            elif signum == signal.SIGUSR1:
                self._reopen_access_logs()

    def _reopen_access_logs(self) -> None:
        """SIGUSR1 to every worker, draining ones too; the filler has no access log (and
        SIGUSR1's default action would kill it)."""
        for worker in self.workers:
            if worker.role is Role.WORKER:
                worker.send(signal.SIGUSR1)

    def _rolling_restart(self) -> None:
        if self.phase != RUNNING:
            log.warning("SIGHUP ignored: the server is %s", self.phase)
            return
        self._reopen_access_logs()  # log rotation: old workers write to the new file
        self._reload_certificates()  # before any new worker starts
        if self.roll:
            log.info("SIGHUP received during a rolling restart: another one will follow")
            self.roll_again = True
            return
        log.info("SIGHUP received: rolling restart of %d worker(s)", self.config.workers)
        self.roll.extend(self._worker_slots())

    def _reload_certificates(self) -> None:
        """The TLS files read and checked again: a good pair is what the new workers
        serve; a bad one is logged, and the pair in use stays (server/tls.py)."""
        if self.certificates is None:
            return
        try:
            fresh = boot.load_tls(self.config)
        except ConfigError as exc:
            log.error("SIGHUP: TLS certificate not reloaded: %s; still serving %s",
                      exc, self.certificates.describe())  # fmt: skip
            return
        if fresh is None:
            return
        old, self.certificates = self.certificates, fresh
        old.close()  # the workers that serve it hold their own copies
        log.info("SIGHUP: TLS certificate reloaded: %s", fresh.describe())

    # -- exits ------------------------------------------------------------------------------

    def _reap(self) -> None:
        for worker in list(self.workers):
            if worker.reap() is None:
                continue
            self._read(worker)  # a boot failure's reason may still be in the pipe
            self._forget_channel(worker)
            worker.close()
            self.workers.remove(worker)
            if self.metrics is not None:
                self.metrics.reaped(worker.pid)
            # A worker that died mid-transfer or mid-upload left its temporary files.
            self.spool.sweep(worker.pid)
            for staging in self.stagings:
                staging.sweep(worker.pid)
            self._on_exit(worker)

    def _on_exit(self, worker: Worker) -> None:
        slot = worker.slot
        if worker.stop_sent_at is not None or self.phase == STOPPING:
            if worker.killed_for is not None and self.status == EXIT_OK:
                self.status = EXIT_FAILURE  # it had to be killed: not a clean stop
            level = logging.INFO if worker.status == 0 else logging.WARNING
            log.log(level, "%s stopped: %s", worker.name, worker.describe_exit())
            return
        successor = self.successors.get(slot) is worker
        if successor:
            del self.successors[slot]
        elif self.slots[slot] is worker:
            self.slots[slot] = None
        if worker.status == EXIT_CONFIG and worker.state == STARTING:
            reason = worker.boot_failure or f"{worker.name} exited with status 2 before ready"
            if successor:
                log.error("rolling restart abandoned: %s; the running workers go on", reason)
                self.roll.clear()
                self.roll_again = False
            else:
                log.error("cannot start: %s", reason)
                self.stop(EXIT_CONFIG)
            return
        what = f"{worker.name} {worker.describe_exit()}"
        if worker.killed_for is not None:
            what += f" ({worker.killed_for})"
        self._count_restart(what)

    def _count_restart(self, what: str) -> None:
        """A restart is due: allowed by the budget (a replacement follows), or the end."""
        if self.budget.record(self.clock()):
            log.warning("%s; starting a replacement", what)
            if self.metrics is not None:
                self.metrics.restarted()
            return
        log.error(
            "giving up: %s, restart %d within %ss exceeds --max-restarts %d;"
            " stopping all workers, exit status %d",
            what, self.config.max_restarts + 1, self.config.restart_window,
            self.config.max_restarts, EXIT_BUDGET,
        )  # fmt: skip
        self.stop(EXIT_BUDGET)

    # -- stopping and timers -------------------------------------------------------------

    def stop(self, status: int) -> None:
        """Close the arbiter's copy of the socket, then SIGTERM workers, last started first."""
        if self.phase == STOPPING:
            return
        self.phase = STOPPING
        self.status = status
        self.stop_began = self.clock()
        self.roll.clear()
        self.roll_again = False
        self.sock.close()
        for worker in reversed(self.workers):
            if worker.role is Role.WORKER:  # the filler fills for them: stopped last
                worker.stop(self.stop_began)
        self._stop_filler_when_alone()

    def _stop_filler_when_alone(self) -> None:
        """Once every worker has exited, the cache filler has nobody to fill for."""
        if self.phase == STOPPING and all(w.role is Role.FILLER for w in self.workers):
            for worker in self.workers:
                worker.stop(self.clock())

    def _check_timers(self) -> None:
        now = self.clock()
        config = self.config
        for worker in self.workers:
            if worker.killed_for is not None or worker.status is not None:
                continue
            if worker.stop_sent_at is not None:
                if now - worker.stop_sent_at > config.grace_period + STOP_MARGIN:
                    log.warning("%s still running %.0fs after SIGTERM: killing it",
                                worker.name, now - worker.stop_sent_at)  # fmt: skip
                    worker.kill("did not stop in time")
            elif worker.state == STARTING:
                limit = max(config.heartbeat_timeout, MIN_START_TIMEOUT)
                if now - worker.started_at > limit:
                    log.error("%s not ready after %.0fs: killing it", worker.name, limit)
                    worker.kill(f"not ready within {limit:g}s")
            elif now - worker.last_sign > config.heartbeat_timeout:
                silent = now - worker.last_sign
                log.error("%s: no heartbeat for %.1fs (--heartbeat-timeout %gs): killing it",
                          worker.name, silent, config.heartbeat_timeout)  # fmt: skip
                worker.kill(f"no heartbeat for {silent:.1f}s")
        self._stop_filler_when_alone()
        if self.phase == STOPPING and not self.stop_announced:
            closed = all(
                w.listener_closed or w.status is not None or w.role is Role.FILLER
                for w in self.workers
            )
            if closed or now - self.stop_began > _CLOSE_REPORT_WAIT:
                self.stop_announced = True
                draining = sum(1 for w in self.workers if w.role is Role.WORKER)
                log.info("stopping: no longer accepting; %d worker(s) draining, grace period %gs",
                         draining, config.grace_period)  # fmt: skip
