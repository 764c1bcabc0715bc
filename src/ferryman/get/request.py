"""One GET of the download's URL: a connection of its own, the token, redirects, Range.

http.client over a fresh connection per request: a segment's requests are
long, so a handshake per request costs nothing worth keeping connections
for, and nothing of an aborted response can leak into the next. https
verifies the server against the system's CA store (OpenSSL's default
paths; SSL_CERT_FILE names another bundle); there is no switch to skip
the check.

The token goes as `Authorization: Bearer` to the URL's own origin only: a
redirect to another host, port or scheme drops it (a signed URL carries its
own authority in the query, and keeps it). Up to MAX_REDIRECTS redirects
are followed.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import quote, urljoin, urlsplit

from ferryman import __version__
from ferryman.errors import ConfigError
from ferryman.get.naming import shown_url

MAX_REDIRECTS = 5
REDIRECTS = frozenset((301, 302, 303, 307, 308))
_TARGET_SAFE = "/%?=&;:@!$'()*+,~-._[]"  # what a request target keeps as written


class NetworkError(Exception):
    """The exchange failed before a whole answer arrived (retried); the message says how."""


class FatalError(Exception):
    """A failure no retry can mend (a refused certificate, a bad redirect)."""


@dataclass(frozen=True, slots=True)
class Source:
    url: str
    token: str | None
    timeout: float
    context: ssl.SSLContext | None = field(default=None, compare=False)


def check_url(url: str) -> None:
    """Nothing if ferryman get can fetch `url`; else ConfigError saying why not."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"{shown_url(url)}: only http:// and https:// URLs can be fetched")
    if not parts.hostname:
        raise ConfigError(f"{shown_url(url)}: the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise ConfigError("a URL with user:password@ is not sent; use --token-file or a signed URL")
    try:
        parts.port  # noqa: B018  (raises for a port that is not a number in range)
    except ValueError:
        raise ConfigError(f"{shown_url(url)}: the port is not a number from 0 to 65535") from None


class Answer:
    """An open response: status, headers, the body to read, and the connection to close."""

    def __init__(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse,
                 url: str) -> None:  # fmt: skip
        self.conn = conn
        self.response = response
        self.status = response.status
        self.reason = response.reason
        self.url = url

    def header(self, name: str) -> str | None:
        return self.response.getheader(name)

    def close(self) -> None:
        self.conn.close()

    def abort(self) -> None:
        """From another thread: make a blocked read of this answer fail now."""
        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed


def get(source: Source, headers: dict[str, str]) -> Answer:
    """GET the source's URL with `headers`, following redirects; the final answer, open."""
    url = source.url
    origin = _origin(url)
    for _ in range(MAX_REDIRECTS + 1):
        sent = dict(headers)
        if source.token is not None and _origin(url) == origin:
            sent["Authorization"] = f"Bearer {source.token}"
        answer = _exchange(source, url, sent)
        location = answer.header("Location")
        if answer.status not in REDIRECTS or location is None:
            return answer
        answer.close()
        url = urljoin(url, location)
        if urlsplit(url).scheme not in ("http", "https"):
            raise FatalError(f"{shown_url(source.url)} redirects to a URL that is not http(s)")
    raise FatalError(f"{shown_url(source.url)}: more than {MAX_REDIRECTS} redirects")


def _exchange(source: Source, url: str, headers: dict[str, str]) -> Answer:
    parts = urlsplit(url)
    target = quote(parts.path or "/", safe=_TARGET_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_TARGET_SAFE)
    conn: http.client.HTTPConnection
    host = parts.hostname or ""
    if parts.scheme == "https":
        context = source.context or ssl.create_default_context()
        conn = http.client.HTTPSConnection(host, parts.port, timeout=source.timeout,
                                           context=context)  # fmt: skip
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=source.timeout)
    try:
        conn.request("GET", target, headers={"User-Agent": f"ferryman/{__version__}", **headers})
        return Answer(conn, conn.getresponse(), url)
    except ssl.SSLCertVerificationError as exc:
        conn.close()
        raise FatalError(f"{shown_url(url)}: TLS: {exc.verify_message or exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        raise NetworkError(describe(exc)) from None


def describe(exc: BaseException) -> str:
    """A network failure in a few words, for the one line a user sees."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, http.client.IncompleteRead):
        return f"connection closed {exc.expected} bytes short of the body's end"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "connection closed without an answer"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port
