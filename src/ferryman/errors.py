"""The one exception tree of ferryman.

    FerrymanError
     +-- ConfigError        bad configuration; a boot failure, never retried
     +-- HttpError          an error answer to one request (status, detail, headers)
     |    +-- ProtocolError malformed or over-limit intake: answer, then close the
     |                      connection (the byte stream can no longer be trusted)
     +-- StoreError         an object store operation failed (stores/base.py says
                            how, and maps each kind to its HttpError)

Lower layers (OSError, sqlite3, store clients) are translated into these at
the boundary that sees them; nothing else reaches the connection.
"""

from __future__ import annotations

# Exit statuses of `ferryman serve`: the CLI, the arbiter and its workers agree on them.
EXIT_OK = 0
EXIT_FAILURE = 1  # unexpected, or a worker had to be killed at the stop
EXIT_CONFIG = 2  # a boot failure (ConfigError): never retried
EXIT_BUDGET = 3  # the restart budget was spent


class FerrymanError(Exception):
    """Base of every error ferryman raises on purpose."""


class ConfigError(FerrymanError):
    """The configuration cannot be used; the server must not start."""


class HttpError(FerrymanError):
    """An error that becomes one HTTP response.

    `error` is a short machine-readable reason (JSON clients key on it),
    `detail` a sentence for humans; `headers` are added to the response
    (for example `Allow` on 405 or `Content-Range` on 416).
    """

    def __init__(
        self,
        status: int,
        error: str,
        detail: str = "",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(f"{status} {error}: {detail}" if detail else f"{status} {error}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers


NOT_FOUND = "not_found"  # the error of every 404
NO_SUCH_FILE = "no such file"  # the detail of a path with nothing to serve


def not_found(detail: str = NO_SUCH_FILE) -> HttpError:
    """A new 404 for each answer.

    Never keep an exception instance to raise again: every raise appends the
    raising frames to its __traceback__, so one shared instance grows with
    each request (tests/unit/test_no_shared_exceptions.py enforces this).
    """
    return HttpError(404, NOT_FOUND, detail)


class ProtocolError(HttpError):
    """The request could not be parsed or broke a limit; the connection closes after it."""
