"""Request ids: the one id an answer's X-Request-Id, its access-log line and, when it
failed, its error line share.

A client (or a proxy in front) may send its own X-Request-Id: it is kept when it
is a sane token (1 to 64 characters of RFC 9110 tchar), so one id follows a
request through every hop. Otherwise ferryman makes one: sixteen hex digits,
a random prefix (40 bits) drawn once per process and a counter, so ids of
several workers and servers do not collide in practice, and making one costs
no system call.
"""

from __future__ import annotations

import os
import re
import secrets
from typing import Final

MAX_LENGTH = 64
HEADER = "x-request-id"  # as the parser keeps header names
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1," + str(MAX_LENGTH) + "}")

# Six hex digits: 16.7 million ids before the counter wraps, then a fresh prefix.
_COUNTER_LIMIT: Final = 0x1000000


class _Ids:
    __slots__ = ("count", "pid", "prefix")

    def __init__(self) -> None:
        self.pid = 0
        self.prefix = ""
        self.count = _COUNTER_LIMIT

    def next(self) -> str:
        count = self.count + 1
        if count >= _COUNTER_LIMIT:
            count = self._draw()
        self.count = count
        # hex() above a leading 1 gives the six digits zero-padded: compiled, a
        # third of what a format spec ("06x") costs on every answer.
        return self.prefix + hex(count + _COUNTER_LIMIT)[3:]

    def _draw(self) -> int:
        """A fresh prefix: at first use, and when the counter wraps."""
        self.pid = os.getpid()
        self.prefix = secrets.token_hex(5)
        return 0

    def forked(self) -> None:
        """In a child after fork(): its own prefix (workers are started with exec and
        import this module afresh; this is for anything that forks)."""
        if self.pid != os.getpid():
            self.count = _COUNTER_LIMIT


_ids = _Ids()
os.register_at_fork(after_in_child=_ids.forked)


def new_request_id() -> str:
    """Sixteen hex digits, different for every call in every process."""
    return _ids.next()


def valid(candidate: str) -> bool:
    """Whether a client's X-Request-Id may be used as this request's id."""
    return _TOKEN.fullmatch(candidate) is not None


def request_id(incoming: str | None) -> str:
    """The client's X-Request-Id when it is sane, else a new id."""
    if incoming is not None and _TOKEN.fullmatch(incoming) is not None:
        return incoming
    return _ids.next()
