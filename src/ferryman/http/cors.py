"""Cross-origin answers (CORS, the Fetch standard): what a page of another origin may read.

Pure: the headers to add are decided from the configured origins and the
request's own headers, nothing else (decisions/0028-cors.md).

* An origin that is not allowed gets no `Access-Control-*` header at all,
  only `Vary: Origin`: the answer depends on Origin, and a cache must not
  hand this origin's answer to an allowed one.
* An actual request from an allowed origin: `Access-Control-Allow-Origin`,
  `Vary: Origin` and `Access-Control-Expose-Headers` (what a script needs to
  resume and verify a download), whatever the status.
* A preflight (OPTIONS with `Access-Control-Request-Method`) from an allowed
  origin: `Access-Control-Allow-Origin`, `-Methods`, `-Headers` (those asked
  for that ferryman reads, nothing more), `-Max-Age`, and `Vary` on the three
  request fields the answer depends on.

`Access-Control-Allow-Origin` is `*` only for an origin allowed by `*` alone,
on a request that carries no credentials (an `Authorization` or `Cookie`
header, a signed URL, or a preflight announcing `Authorization`); otherwise
it is the origin itself. `Access-Control-Allow-Credentials: true` goes only
to an origin named in the list, and only with `--cors-credentials`: never
beside `*`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping

ANY = "*"
Header = tuple[str, str]

# Request headers a cross-origin script may send: those ferryman reads.
REQUEST_HEADERS = (
    "Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since",
    "If-Range", "Authorization", "Content-Type", "Content-Digest", "Repr-Digest", "Digest",
    "Content-MD5", "Accept", "X-Request-Id",
)  # fmt: skip
# Answer headers a cross-origin script may read beyond the safelisted ones: a download
# resumed (Content-Range, Accept-Ranges, ETag, Last-Modified), verified (the digests),
# retried (Retry-After), reported (X-Request-Id); a write's Location, a 401's challenge.
EXPOSED = (
    "Content-Range", "Accept-Ranges", "Content-Length", "ETag", "Last-Modified",
    "Repr-Digest", "Content-Digest", "Want-Repr-Digest", "Want-Content-Digest",
    "X-Request-Id", "Retry-After", "Location", "WWW-Authenticate",
)  # fmt: skip

_ALLOWED_BY_NAME = {name.lower(): name for name in REQUEST_HEADERS}
VARY_ORIGIN: Header = ("Vary", "Origin")
VARY_PREFLIGHT: Header = ("Vary", "Origin, Access-Control-Request-Method, "
                                  "Access-Control-Request-Headers")  # fmt: skip
_EXPOSE: Header = ("Access-Control-Expose-Headers", ", ".join(EXPOSED))
_CREDENTIALS: Header = ("Access-Control-Allow-Credentials", "true")
_CREDENTIAL_HEADERS = ("authorization", "cookie")


class Cors:
    """The configured origins, and the headers each request's answer gets."""

    __slots__ = ("_any", "_credentials", "_listed", "_max_age", "_methods", "_public")

    def __init__(
        self, origins: Iterable[str], *, methods: str, max_age: int, credentials: bool = False
    ) -> None:
        """`origins` as normal_origin returns them; `methods` the Allow value."""
        origins = tuple(origins)
        self._any = ANY in origins
        self._listed = frozenset(origin for origin in origins if origin != ANY)
        self._methods = methods
        self._max_age = str(max_age)
        self._credentials = credentials
        self._public: tuple[Header, ...] = (("Access-Control-Allow-Origin", ANY), VARY_ORIGIN,
                                            _EXPOSE)  # fmt: skip

    def actual(self, headers: Mapping[str, str], signed: bool = False) -> tuple[Header, ...]:
        """What an answer to a request with an Origin header gets, whatever its status.
        `signed`: the URL carries a signature (a credential of its own)."""
        origin = headers["origin"]
        allowed = self._allow_origin(origin, signed or _carries_credentials(headers))
        if allowed is None:
            return (VARY_ORIGIN,)
        if allowed == ANY:
            return self._public
        if self._credentials and origin in self._listed:
            return (("Access-Control-Allow-Origin", allowed), VARY_ORIGIN, _EXPOSE, _CREDENTIALS)
        return (("Access-Control-Allow-Origin", allowed), VARY_ORIGIN, _EXPOSE)

    def preflight(self, headers: Mapping[str, str], signed: bool = False) -> tuple[Header, ...]:
        """What a preflight's answer gets (OPTIONS with Origin and
        Access-Control-Request-Method)."""
        origin = headers["origin"]
        requested = requested_headers(headers.get("access-control-request-headers", ""))
        allowed = self._allow_origin(origin, signed or "authorization" in requested)
        if allowed is None:
            return (VARY_PREFLIGHT,)
        answer = [
            ("Access-Control-Allow-Origin", allowed),
            ("Access-Control-Allow-Methods", self._methods),
        ]
        granted = [_ALLOWED_BY_NAME[name] for name in requested if name in _ALLOWED_BY_NAME]
        if granted:
            answer.append(("Access-Control-Allow-Headers", ", ".join(granted)))
        answer.append(("Access-Control-Max-Age", self._max_age))
        if self._credentials and origin in self._listed:
            answer.append(_CREDENTIALS)
        answer.append(VARY_PREFLIGHT)
        return tuple(answer)

    def _allow_origin(self, origin: str, credentials: bool) -> str | None:
        """The Access-Control-Allow-Origin value for `origin`, or None if not allowed."""
        if origin in self._listed:
            return origin
        if not self._any:
            return None
        return origin if credentials else ANY


def _carries_credentials(headers: Mapping[str, str]) -> bool:
    return any(name in headers for name in _CREDENTIAL_HEADERS)


def requested_headers(value: str) -> list[str]:
    """Access-Control-Request-Headers' names, lower case, each once, in their order."""
    names = (name.strip(" \t").lower() for name in value.split(","))
    return list(dict.fromkeys(name for name in names if name))


# -- the configured origins --------------------------------------------------------------

_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]*")
_HOST_NAME = re.compile(r"[a-z0-9_\-]+(?:\.[a-z0-9_\-]+)*")
_PORT = re.compile(r"[0-9]{1,5}")
DEFAULT_PORTS = {"http": 80, "https": 443}


def normal_origin(text: str) -> str:
    """`*`, or `scheme://host[:port]` as a browser writes it in Origin (scheme and host in
    lower case, no default port, IPv6 in its short form). ValueError says what is wrong."""
    if text == ANY:
        return ANY
    if text.strip().lower() == "null":
        raise ValueError(
            "the origin 'null' (sandboxed frames, file: pages) is shared by every such page; "
            "use '*' for files anyone may read"
        )
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep or not _SCHEME.fullmatch(scheme):
        raise ValueError(f"{text!r} is not an origin: expected scheme://host[:port] or '*'")
    if any(mark in rest for mark in "/?#"):
        raise ValueError(
            f"{text!r} has a path: an origin is scheme://host[:port], without even a final '/'"
        )
    if "@" in rest:
        raise ValueError(f"{text!r} names a user: an origin is scheme://host[:port]")
    host, port = _split_port(rest, text)
    host = _normal_host(host, text)
    if port is None or DEFAULT_PORTS.get(scheme) == port:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _split_port(rest: str, text: str) -> tuple[str, int | None]:
    """`host` and the port (None when absent) of `host[:port]`; an IPv6 host is bracketed."""
    if rest.startswith("["):
        end = rest.find("]") + 1
        if end == 0:
            raise ValueError(f"{text!r}: an IPv6 address needs its closing ']'")
        host, after = rest[:end], rest[end:]
    elif ":" in rest:
        host, _, port = rest.rpartition(":")
        after = ":" + port
    else:
        host, after = rest, ""
    if not after:
        return host, None
    port = after[1:]
    if after[0] != ":" or not _PORT.fullmatch(port) or not 0 < int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return host, int(port)


def _normal_host(host: str, text: str) -> str:
    if host.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            raise ValueError(f"{text!r}: {host} is not an IPv6 address") from None
    if not host.isascii():
        raise ValueError(f"{text!r}: write an international host name in its ASCII form (xn--)")
    host = host.lower()
    if not _HOST_NAME.fullmatch(host):
        raise ValueError(f"{text!r}: {host!r} is not a host name or address")
    return host
