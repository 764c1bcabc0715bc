"""TEST-ONLY fault injection in worker processes. Never set these in production.

The supervisor's tests need workers that crash, hang and fail on purpose,
in real processes. Nothing here does anything unless the environment has
FERRYMAN_TEST_HOOKS=1, and this module is the only place that reads these
variables (tests/integration/test_supervisor.py sets them):

    FERRYMAN_TEST_CRASH_AT_START=1     the worker raises before it serves (exit 1)
    FERRYMAN_TEST_BOOT_FAIL=1          the worker finds its configuration unusable (exit 2):
                                       what changed after the arbiter's boot checks
    FERRYMAN_TEST_BLOCK_LOOP_AFTER=S   S seconds after it is ready, the worker's
                                       event loop blocks for good (a stuck handler)
    FERRYMAN_TEST_RAISE_ON=/PATH       a request for exactly /PATH makes the
                                       handler raise (a bug in one handler)
    FERRYMAN_TEST_KILL_BEFORE_RECORD=1 a write that reaches its catalog record (after
                                       its commit) kills the worker with SIGKILL: the
                                       crash between a rename and its record
    FERRYMAN_TEST_HOOK_SPAWNS=N        hooks apply only to the first N workers the
                                       arbiter starts, so that replacements are healthy
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ferryman.errors import ConfigError

ENABLE = "FERRYMAN_TEST_HOOKS"


class InjectedFault(RuntimeError):
    """A failure a test asked for."""


@dataclass(frozen=True)
class FaultHooks:
    crash_at_start: bool = False
    block_loop_after: float | None = None
    raise_on: bytes | None = None
    kill_before_record: bool = False
    boot_fail: bool = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], number: int) -> FaultHooks:
        """The hooks for the `number`-th worker started; none unless explicitly enabled."""
        if environ.get(ENABLE) != "1":
            return cls()
        spawns = environ.get("FERRYMAN_TEST_HOOK_SPAWNS")
        if spawns is not None and number > int(spawns):
            return cls()
        block = environ.get("FERRYMAN_TEST_BLOCK_LOOP_AFTER")
        raise_on = environ.get("FERRYMAN_TEST_RAISE_ON")
        return cls(
            crash_at_start=environ.get("FERRYMAN_TEST_CRASH_AT_START") == "1",
            boot_fail=environ.get("FERRYMAN_TEST_BOOT_FAIL") == "1",
            block_loop_after=float(block) if block else None,
            raise_on=raise_on.encode() if raise_on else None,
            kill_before_record=environ.get("FERRYMAN_TEST_KILL_BEFORE_RECORD") == "1",
        )

    def at_start(self) -> None:
        if self.crash_at_start:
            raise InjectedFault("FERRYMAN_TEST_CRASH_AT_START: crashing on purpose")
        if self.boot_fail:
            raise ConfigError("FERRYMAN_TEST_BOOT_FAIL: a resource went away after the boot step")
        if self.raise_on is not None:
            self._patch_handler(self.raise_on)
        if self.kill_before_record:
            self._patch_catalog()

    def when_ready(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.block_loop_after is not None:
            loop.call_later(self.block_loop_after, _block_forever)

    @staticmethod
    def _patch_handler(target: bytes) -> None:
        from ferryman.app.application import Application

        handler = Application.handler

        # The worker's context asks the application once for what answers requests:
        # it gets one that fails on `target` and passes everything else through.
        def failing_handler(self: Application) -> Any:
            handle = handler(self)

            def failing(request: Any, *rest: Any) -> Any:
                if request.target == target:
                    raise InjectedFault(f"FERRYMAN_TEST_RAISE_ON: failing {target!r} on purpose")
                return handle(request, *rest)

            return failing

        setattr(Application, "handler", failing_handler)  # noqa: B010 - mypy would refuse it

    @staticmethod
    def _patch_catalog() -> None:
        from ferryman.catalog.db import SqlCatalog

        def die(*args: Any, **kwargs: Any) -> Any:
            os.kill(os.getpid(), signal.SIGKILL)

        for name in ("record", "mark_deleted"):
            setattr(SqlCatalog, name, die)


def _block_forever() -> None:
    while True:  # the loop never gets control back; only SIGKILL ends this
        time.sleep(3600)
