"""Unexpected failures in the log: one line each, with a request id the client sees too.

A bug met while answering a request is logged as

    request 3f9c0a1b7e2d failed: KeyError: 'x' (at ferryman/app/files.py:212 in _open) GET /a

and the client's 500 carries the same id (in its detail and in X-Request-Id,
which every answer has), as does the request's access-log line, so a user's
report can be matched to its line. The id is the request's own
(ferryman/requestid.py): the connection gave it when the request arrived.

One line, because a client that can provoke a traceback can fill the log with
them, and because log collectors split tracebacks into unrelated lines. The
full traceback is for developers: with FERRYMAN_TRACEBACKS=1 in the
environment it follows the line (read once, when this module is imported).
"""

from __future__ import annotations

import logging
import os
import traceback

from ferryman.errors import HttpError

TRACEBACKS = os.environ.get("FERRYMAN_TRACEBACKS") == "1"
MAX_MESSAGE = 300  # characters of the exception's message kept in the line

# Where ferryman's sources are; compiled modules may name theirs relative to src/.
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_SOURCE_ROOT = os.path.dirname(_PACKAGE_DIR.rstrip(os.sep)) + os.sep


def describe(exc: BaseException) -> str:
    """`Type: message (at file:line in function)`, on one line.

    The place is the innermost frame in ferryman's own code (where a library
    was called wrongly, or where ferryman raised), else the innermost frame.
    """
    message = _one_line(str(exc))
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [frame for frame in frames if _is_ours(frame.filename)]
    if not (ours or frames):
        return text
    frame = (ours or frames)[-1]
    return f"{text} (at {_short(frame.filename)}:{frame.lineno} in {frame.name})"


def log_request_failure(
    log: logging.Logger, request_id: str, exc: BaseException, method: str, target: bytes
) -> None:
    """The one ERROR line for a request that failed unexpectedly (a traceback follows
    only with FERRYMAN_TRACEBACKS=1)."""
    shown = _one_line(target.decode("latin-1"))
    log.error(
        "request %s failed: %s %s %s",
        request_id, describe(exc), method, shown,
        exc_info=exc if TRACEBACKS else None,
    )  # fmt: skip


def internal_error(
    log: logging.Logger, exc: BaseException, method: str, target: bytes, request_id: str
) -> HttpError:
    """A handler's bug: one log line and a 500 that name the request's id (the answer's
    X-Request-Id header carries it too: every answer has one)."""
    log_request_failure(log, request_id, exc, method, target)
    detail = f"request {request_id} failed; the server log names it"
    return HttpError(500, "internal_error", detail)


def log_failure(log: logging.Logger, what: str, exc: BaseException) -> None:
    """One ERROR line for a bug met outside a request's answer (a fill, an extraction)."""
    log.error("%s: %s", _one_line(what), describe(exc), exc_info=exc if TRACEBACKS else None)


def log_loop_failure(log: logging.Logger, context: dict[str, object]) -> None:
    """An event loop's exception handler: asyncio's own would log a traceback."""
    message = _one_line(str(context.get("message") or "unhandled error in the event loop"))
    exc = context.get("exception")
    if isinstance(exc, BaseException):
        log.error("%s: %s", message, describe(exc), exc_info=exc if TRACEBACKS else None)
    else:
        log.error("%s", message)


def _one_line(text: str) -> str:
    """Control characters (a newline would start a forged log line) escaped; bounded."""
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + "..."
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


_RELATIVE_MARK = "ferryman" + os.sep  # compiled modules: src/ferryman/server/connection.py


def _is_ours(filename: str) -> bool:
    if filename.startswith(_PACKAGE_DIR):
        return True
    return not os.path.isabs(filename) and _RELATIVE_MARK in filename


def _short(filename: str) -> str:
    """ferryman/app/files.py for ferryman's files, the base name for others."""
    if filename.startswith(_PACKAGE_DIR):
        return filename.removeprefix(_SOURCE_ROOT)
    if _is_ours(filename):
        return filename[filename.index(_RELATIVE_MARK) :]
    return os.path.basename(filename)
