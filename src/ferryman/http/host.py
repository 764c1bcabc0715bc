"""The Host field's value: RFC 9112 3.2 and RFC 9110 7.2, checked once per distinct value.

llhttp checks only that a field value holds no control characters, so
`Host: a b`, `a/b` or `a@b` would pass it; the parser asks here.
"""

from __future__ import annotations

import ipaddress
import re

from ferryman.errors import ProtocolError

# RFC 9110 7.2: Host = uri-host [ ":" port ], uri-host = IP-literal / IPv4address / reg-name
# (RFC 3986 3.2.2; an IPv4address is also a reg-name). The empty reg-name the grammar
# allows is refused: an http URI with an empty host is invalid (RFC 9110 4.2.1), and
# every target ferryman serves is one. The port is a TCP port: at most 65535.
_HOST = re.compile(
    r"(?:(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+"  # reg-name
    r"|\[(?P<ipv6>[0-9A-Fa-f:.]+)\]"  # IP-literal: IPv6address (checked below)
    r"|\[v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+\])"  # IP-literal: IPvFuture
    r"(?::(?P<port>[0-9]*))?"
)
_HOSTS: set[str] = set()  # Host values found valid (a memo: most servers see one or two)
_HOSTS_MAX = 256


def check_host(value: str) -> None:
    """400 unless `value` is uri-host [":" port]; a valid one is remembered (bounded:
    clients choose the values)."""
    if value in _HOSTS:
        return
    match = _HOST.fullmatch(value.rstrip(" \t"))  # llhttp keeps trailing whitespace (OWS)
    valid = match is not None
    if match is not None:
        ipv6, port = match.group("ipv6"), match.group("port")
        if ipv6 is not None:
            try:
                ipaddress.IPv6Address(ipv6)
            except ValueError:
                valid = False
        if port and (len(port) > 5 or int(port) > 65535):
            valid = False
    if not valid:
        raise ProtocolError(400, "bad_request", "invalid Host header")
    if len(_HOSTS) < _HOSTS_MAX:
        _HOSTS.add(value)
