"""`ferryman get`'s command line, apart from the command: building the parser for
every command must not load the download client (its HTTP and TLS modules)."""

from __future__ import annotations

from typing import Any

MAX_CONNECTIONS = 16


def add_parser(commands: Any) -> None:
    get = commands.add_parser("get", help="download a file, resumable and verified")
    get.add_argument("url", help="http:// or https:// URL (a signed URL as it is)")
    get.add_argument(
        "-o", "--output", metavar="PATH", default=None,
        help="where to save it (default: the URL's file name, here)",
    )  # fmt: skip
    get.add_argument(
        "--connections", "-x", type=int, default=1, metavar="N",
        help=f"parallel ranged connections, 1 to {MAX_CONNECTIONS} (default: 1)",
    )  # fmt: skip
    get.add_argument(
        "--retries", type=int, default=5, metavar="N",
        help="failures in a row per connection before giving up (default: 5)",
    )  # fmt: skip
    get.add_argument(
        "--sha256", metavar="HEX", default=None,
        help="the file's known SHA-256; saved only if it matches",
    )  # fmt: skip
    get.add_argument(
        "--token-file", metavar="FILE", default=None,
        help="a bearer token to send (default: env FERRYMAN_TOKEN)",
    )  # fmt: skip
    get.add_argument(
        "--timeout", default="30s", metavar="DURATION",
        help="a connection silent this long failed (default: 30s)",
    )  # fmt: skip
    get.add_argument(
        "--limit-rate", default=None, metavar="RATE",
        help="at most this many bytes a second, all connections together (e.g. 4M)",
    )  # fmt: skip
    get.add_argument("-q", "--quiet", action="store_true", help="no progress, no summary")
