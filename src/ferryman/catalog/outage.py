"""Whether a catalog server answers: fail fast while it does not, probe until it does.

When a call finds the server unreachable, the catalog is marked down: every
call then raises CatalogUnavailable at once, without waiting for a
connection, so a PUT answers 503 in no time instead of holding its client
for the connect timeout. One probe thread (per process) tries the server
every PROBE_INTERVAL seconds; the first success marks it up again, and the
next call goes through. Each change is logged once, as one line.

Who owns what: an `Outage` owns its probe thread, started when the catalog
goes down and ended when it is up again or `close()` is called; `_lock`
guards `_since` and `_thread`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ferryman.catalog.api import CatalogUnavailable

log = logging.getLogger("ferryman.catalog")

PROBE_INTERVAL = 1.0  # seconds between two tries of a server that is down


class Outage:
    """The up or down state of the catalog server at `location` (shown redacted)."""

    def __init__(
        self,
        location: str,
        probe: Callable[[], None],
        interval: float = PROBE_INTERVAL,
        describe: Callable[[BaseException], str] | None = None,
    ) -> None:
        self.location = location
        self._probe = probe  # raises when the server does not answer
        self._describe = describe or one_line  # a probe's failure as a message may show it
        self._interval = interval
        self._lock = threading.Lock()
        self._since: float | None = None  # time.monotonic() when it went down; None: up
        self._reason = ""
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def down(self) -> bool:
        return self._since is not None

    def check(self) -> None:
        """CatalogUnavailable while the server is down; nothing when it is up."""
        since = self._since
        if since is not None:
            raise CatalogUnavailable(
                f"catalog {self.location} is unreachable (for {time.monotonic() - since:.0f} s:"
                f" {self._reason}); retry"
            )

    def went_down(self, reason: str) -> None:
        """A call could not reach the server: fail fast from now on, and start probing."""
        with self._lock:
            if self._since is not None or self._stop.is_set():
                return
            self._since = time.monotonic()
            self._reason = reason
            log.error(
                "catalog %s is unreachable: %s; writes answer 503 until it answers again",
                self.location, reason,
            )  # fmt: skip
            self._thread = threading.Thread(target=self._run, name="catalog-probe", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._probe()
            except Exception as exc:
                self._reason = self._describe(exc)
                continue
            with self._lock:
                since, self._since, self._thread = self._since, None, None
            if since is not None:
                log.warning(
                    "catalog %s answers again after %.1f s", self.location,
                    time.monotonic() - since,
                )  # fmt: skip
            return

    def close(self) -> None:
        """Stop probing (idempotent)."""
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout=self._interval + 1)


def one_line(exc: BaseException) -> str:
    """An exception's text on one line (libpq's messages span several)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
