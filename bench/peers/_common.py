"""Shared by the peer servers: arguments and the readiness line."""

from __future__ import annotations

import argparse
import socket


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--root", required=True, help="directory to serve")
    parser.add_argument("--host", default="127.0.0.1")
    return parser.parse_args()


def bound_socket(host: str) -> socket.socket:
    """A TCP socket bound to a free port; the server calls listen() itself."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


def announce(sock: socket.socket) -> None:
    """Print the line the benchmark waits for (the same one ferryman prints)."""
    host, port = sock.getsockname()[:2]
    print(f"listening on http://{host}:{port}", flush=True)
