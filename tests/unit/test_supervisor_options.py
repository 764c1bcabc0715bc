"""The supervisor's settings and the pieces of the arbiter that need no process."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import cast

import pytest

from ferryman import cli
from ferryman.config import build_config
from ferryman.errors import EXIT_BUDGET, EXIT_OK, ConfigError
from ferryman.supervisor import arbiter
from ferryman.supervisor.heartbeat import Beacon, Channel
from ferryman.supervisor.hooks import FaultHooks
from ferryman.supervisor.process import Role, Worker


def cli_args(*argv: str) -> dict[str, object]:
    args = vars(cli.build_parser().parse_args(["serve", *argv]))
    args.pop("command")
    return args


def test_defaults() -> None:
    config = build_config(cli_args(), environ={})
    assert (config.workers, config.heartbeat_timeout) == (1, 30.0)
    assert (config.max_restarts, config.restart_window) == (5, 10.0)


def test_workers_auto_is_one_per_usable_cpu() -> None:
    config = build_config(cli_args("--workers", "auto"), environ={})
    assert config.workers == len(os.sched_getaffinity(0))
    assert build_config({}, environ={"FERRYMAN_WORKERS": "AUTO"}).workers == config.workers


def test_flags_and_environment() -> None:
    config = build_config(
        cli_args("--workers", "3", "--heartbeat-timeout", "500ms"),
        environ={"FERRYMAN_MAX_RESTARTS": "0", "FERRYMAN_RESTART_WINDOW": "1m"},
    )
    assert (config.workers, config.heartbeat_timeout) == (3, 0.5)
    assert (config.max_restarts, config.restart_window) == (0, 60.0)


@pytest.mark.parametrize(
    ("argv", "flag"),
    [(("--workers", "0"), "--workers"), (("--workers", "many"), "--workers"),
     (("--workers", "5000"), "--workers"), (("--max-restarts", "-1"), "--max-restarts"),
     (("--restart-window", "0"), "--restart-window"),
     (("--heartbeat-timeout", "0s"), "--heartbeat-timeout")],
)  # fmt: skip
def test_bad_values_name_their_flag(argv: tuple[str, ...], flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        build_config(cli_args(*argv), environ={})


def test_messages_cross_the_pipe_whole_and_in_pieces() -> None:
    read_fd, write_fd = os.pipe()
    beacon, channel = Beacon(write_fd), Channel(read_fd)
    try:
        assert beacon.send("ready", "uvloop")
        assert beacon.send("boot-failed", "cannot open --access-log /x:\nNo such file")
        os.write(write_fd, b"be")
        assert channel.read() == [
            ("ready", "uvloop"),
            ("boot-failed", "cannot open --access-log /x: No such file"),
        ]
        os.write(write_fd, b"at\n")
        assert channel.read() == [("beat", "")]
        beacon.close()
        assert channel.read() == [] and channel.eof
    finally:
        channel.close()


def test_a_worker_notices_when_its_arbiter_is_gone() -> None:
    read_fd, write_fd = os.pipe()
    beacon = Beacon(write_fd)
    os.close(read_fd)
    try:
        assert not beacon.send("beat")
        assert beacon.orphaned
    finally:
        beacon.close()


def test_fault_hooks_are_off_unless_enabled() -> None:
    armed = {"FERRYMAN_TEST_CRASH_AT_START": "1", "FERRYMAN_TEST_BLOCK_LOOP_AFTER": "0.5"}
    assert FaultHooks.from_environ(armed, 1) == FaultHooks()
    enabled = {**armed, "FERRYMAN_TEST_HOOKS": "1", "FERRYMAN_TEST_HOOK_SPAWNS": "1"}
    assert FaultHooks.from_environ(enabled, 1) == FaultHooks(True, 0.5, None)
    assert FaultHooks.from_environ(enabled, 2) == FaultHooks()


class FakeWorker:
    def __init__(self, slot: int, stopped: list[int]) -> None:
        self.slot = slot
        self.role = Role.WORKER
        self.stopped = stopped

    def stop(self, now: float) -> None:
        self.stopped.append(self.slot)


def test_stop_signals_workers_in_reverse_start_order(tmp_path: Path) -> None:
    config = build_config(cli_args(str(tmp_path), "--workers", "3"), environ={})
    sock = socket.create_server(("127.0.0.1", 0))
    boss = arbiter.Arbiter(config, sock)
    stopped: list[int] = []
    try:
        boss.workers = [cast(Worker, FakeWorker(slot, stopped)) for slot in (1, 2, 3)]
        boss.stop(EXIT_OK)
        assert stopped == [3, 2, 1]
        assert sock.fileno() == -1  # the arbiter's copy closes first
    finally:
        boss.selector.close()
        for fd in (boss._wake_r, boss._wake_w):
            os.close(fd)
        sock.close()


def test_a_worker_that_cannot_even_be_spawned_counts_against_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(arbiter, "spawn", refuse)
    config = build_config(cli_args(str(tmp_path), "--max-restarts", "2"), environ={})
    sock = socket.create_server(("127.0.0.1", 0))
    boss = arbiter.Arbiter(config, sock)
    try:
        for _ in range(3):
            boss._advance()
        assert (boss.phase, boss.status) == (arbiter.STOPPING, EXIT_BUDGET)
        assert "giving up: worker 1 could not be started" in caplog.text
        boss._advance()  # nothing more is started once stopping
    finally:
        boss.selector.close()
        for fd in (boss._wake_r, boss._wake_w):
            os.close(fd)
        sock.close()
