"""The access log: one line per response, combined or JSON-lines, off by default.

A JSON line names the request's id (`request_id`, the answer's X-Request-Id);
the combined format stays the one every log tool reads.

Lines are buffered and written at most once a second (and on shutdown), so a
busy server makes one write call per second for its log, not one per request.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import IO, Protocol

from ferryman.errors import ConfigError
from ferryman.http.parser import Request


class Client(Protocol):
    """What a log line needs of a connection."""

    peer: str


log = logging.getLogger("ferryman.accesslog")
_SIGNATURE = re.compile(r"(ferryman-signature=)[^&]*")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _quoted(text: str) -> str:
    """Escape a field for the combined format: no raw quotes or control characters."""
    out = text.replace("\\", "\\\\").replace('"', '\\"')
    if out.isprintable():
        return out
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in out)


def _clf_time(now: float) -> str:
    t = time.gmtime(now)
    clock = f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    return f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{clock} +0000"


class AccessLog:
    def __init__(self, target: str, fmt: str = "combined") -> None:
        self.enabled = target != "off"
        self.json = fmt == "json"
        self._lines: list[str] = []
        self._out: IO[str] | None = None
        self._owned = False
        if target == "-":
            self._out = sys.stdout
        elif self.enabled:
            try:
                self._out = open(target, "a", encoding="utf-8")  # noqa: SIM115 - lives with the server
            except OSError as exc:
                raise ConfigError(f"cannot open --access-log {target}: {exc.strerror}") from None
            self._owned = True

    def record(
        self,
        conn: Client,
        request: Request,
        status: int,
        size: int,
        started: float,
        error: str | None = None,
    ) -> None:
        if not self.enabled:
            return
        now = time.time()
        duration = time.monotonic() - started
        version = "HTTP/1.1" if request.http11 else "HTTP/1.0"
        target = request.target.decode("latin-1")
        if "ferryman-signature=" in target:  # a signed URL is a credential: keep it out of logs
            target = _SIGNATURE.sub(r"\1[redacted]", target)
        headers = request.headers
        if self.json:
            entry = {
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                "request_id": request.id,
                "remote": conn.peer,
                "method": request.method,
                "target": target,
                "version": version,
                "status": status,
                "bytes": size,
                "duration_ms": round(duration * 1000, 3),
                "referer": headers.get("referer"),
                "user_agent": headers.get("user-agent"),
            }
            if error:
                entry["error"] = error
            self._lines.append(json.dumps(entry))
        else:
            line = _quoted(f"{request.method} {target} {version}")
            self._lines.append(
                f'{conn.peer} - - [{_clf_time(now)}] "{line}"'
                f' {status} {size} "{_quoted(headers.get("referer", "-"))}"'
                f' "{_quoted(headers.get("user-agent", "-"))}"'
            )

    def record_error(self, conn: Client, status: int, request_id: str) -> None:
        """A request that could not be parsed: no method or target to report."""
        if not self.enabled:
            return
        if self.json:
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            entry = {"time": now, "request_id": request_id, "remote": conn.peer,
                     "status": status, "bytes": 0}  # fmt: skip
            self._lines.append(json.dumps(entry))
        else:
            self._lines.append(f'{conn.peer} - - [{_clf_time(time.time())}] "-" {status} 0 "-" "-"')

    def reopen(self) -> None:
        """SIGUSR1: reopen the log file (after rotation moved it away). The new file is
        opened before the old one is closed: if it cannot be, logging goes on where it was."""
        if self._owned and self._out is not None:
            self.flush()
            try:
                fresh = open(self._out.name, "a", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                log.warning("cannot reopen the access log %s (%s); still writing to the old one",
                            self._out.name, exc.strerror)  # fmt: skip
                return
            self._out.close()
            self._out = fresh

    def flush(self) -> None:
        if self._lines and self._out is not None:
            self._out.write("\n".join(self._lines) + "\n")
            self._out.flush()
            self._lines.clear()

    def close(self) -> None:
        self.flush()
        if self._owned and self._out is not None:
            self._out.close()
