"""Client sockets for the many-connection workloads, and whose fault a failure is.

Thousands of connections to one server port from one address need as many
local ports, and the machine's ephemeral range (about 28,000 ports) is shared
with every other test run: ports still held by their sockets in TIME_WAIT, or
reserved by a bind(), are not available. A run of 10,000 idle connections once
failed after 9,994 with EADDRNOTAVAIL. So connections are spread over several
source addresses: on Linux the whole of 127.0.0.0/8 is loopback, and a local
port only has to be unique per (source address, destination) pair, so 8
sources need an eighth of the ports each.

A connection that fails is charged to the side that failed:

- the client, when the error is about this process or this machine's local
  resources (no local port, no descriptor, no buffer memory): the server never
  saw the connection, and the run says so instead of flagging the server;
- the server, for everything else: refused or reset connections, a handshake
  that never completes (its accept queue was full), an answer that never
  came, a status other than 200.
"""

from __future__ import annotations

import errno
import resource
import socket

# Errors that mean this client, not the server, could not make the connection.
CLIENT_ERRNOS = {
    errno.EADDRNOTAVAIL: "no free local port or address",
    errno.EADDRINUSE: "local address in use",
    errno.EMFILE: "client out of descriptors",
    errno.ENFILE: "machine out of descriptors",
    errno.ENOBUFS: "client out of buffer space",
    errno.ENOMEM: "client out of memory",
}

# Linux: bind() picks the address only; the port is chosen at connect(), where
# the kernel needs only the 4-tuple to be unused. Plain bind((addr, 0)) would
# reserve a port for this address outright, against any destination.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def raise_nofile_limit(connections: int, margin: int) -> None:
    """Room for `connections` descriptors plus `margin` (the process's own files).

    The soft limit goes up to the hard one; the hard one too (root only) if it
    is short of connections + margin. Not allowed: the limit stays, and failed
    connections say EMFILE.
    """
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    want = hard if hard == resource.RLIM_INFINITY else max(hard, connections + margin)
    for limit in ((want, want), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limit)
            return
        except (ValueError, OSError):
            continue


def source_addresses(host: str, count: int) -> list[str | None]:
    """`count` loopback source addresses for a loopback `host`; else the kernel's choice."""
    if count <= 1 or not host.startswith("127."):
        return [None]
    return [f"127.0.0.{n}" for n in range(1, min(count, 254) + 1)]


def client_socket(source: str | None, rcvbuf: int | None = None) -> socket.socket:
    """A non-blocking TCP socket bound to `source` (any port), ready to connect."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source is not None:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Failures:
    """Failed connections, counted by side (client or server) and by cause."""

    def __init__(self) -> None:
        self.client = 0
        self.server = 0
        self.causes: dict[str, int] = {}

    def add(self, phase: str, exc: BaseException | str) -> None:
        """Record one failure in `phase` (socket, connect, request, response)."""
        if isinstance(exc, str):
            cause, side = exc, "server"
        else:
            code = getattr(exc, "errno", None)
            name = errno.errorcode.get(code, "") if isinstance(code, int) else ""
            cause = name or type(exc).__name__
            side = "client" if phase == "socket" or code in CLIENT_ERRNOS else "server"
            if code in CLIENT_ERRNOS:
                cause += f" ({CLIENT_ERRNOS[code]})"
        if side == "client":
            self.client += 1
        else:
            self.server += 1
        key = f"{side}: {phase} {cause}"
        self.causes[key] = self.causes.get(key, 0) + 1

    @property
    def total(self) -> int:
        return self.client + self.server

    def as_dict(self) -> dict[str, object]:
        return {"client_failed": self.client, "server_failed": self.server, "errors": self.causes}
