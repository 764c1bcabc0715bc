"""The command line: `ferryman serve [SOURCE] [flags]`, and the commands beside it
(sign, audit, repair, catalog, get: each says its own exit statuses).

`serve` runs the arbiter (ferryman.supervisor.arbiter), which binds the
socket and supervises --workers worker processes, even when there is one.

Exit status (docs/operations.md#exit-status):

    0  stopped by SIGTERM or SIGINT, every worker drained and exited
    1  an unexpected failure: a traceback in the arbiter, or a worker that
       ignored the stop and had to be killed
    2  the command line or configuration is wrong or the server cannot
       start (port in use, unreadable SOURCE, unopenable access log, in the
       arbiter or in a worker): a boot failure that no restart would fix
    3  the restart budget is spent: workers exited more than --max-restarts
       times within --restart-window, so the arbiter stopped them all
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence

from ferryman import __version__
from ferryman.config import build_config
from ferryman.config.flags import add_serve_arguments
from ferryman.errors import EXIT_CONFIG, EXIT_OK, ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferryman", description="HTTP file server")
    parser.add_argument("--version", action="version", version=f"ferryman {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a directory over HTTP")
    add_serve_arguments(serve)
    sign = commands.add_parser("sign", help="print a signed URL (for --signing-key servers)")
    sign.add_argument("url", help="the URL to sign, e.g. http://host:8000/path/file")
    sign.add_argument("--method", default="GET",
                      help="what it allows: GET, HEAD, PUT or DELETE (default: GET)")  # fmt: skip
    sign.add_argument("--expires", default="1h", help="lifetime, e.g. 30m, 1h, 7d (default: 1h)")
    sign.add_argument("--signing-key", metavar="FILE", default=None,
                      help="the key file the server uses (env FERRYMAN_SIGNING_KEY)")  # fmt: skip
    sign.add_argument("--once", action="store_true",
                      help="the URL allows one successful PUT or DELETE (the server's catalog "
                           "records its use)")  # fmt: skip
    from ferryman.audit.arguments import add_audit_parsers, add_catalog_parser

    add_audit_parsers(commands)
    add_catalog_parser(commands)
    from ferryman.get import arguments as get

    get.add_parser(commands)
    return parser


def sign_command(args: dict[str, str | bool | None]) -> int:
    """`ferryman sign URL`: print the URL with its expiry and signature added."""
    from ferryman.app.auth import SIGNABLE_METHODS, SigningKey, check_signable_url, expires_in

    key_file = str(args["signing_key"] or os.environ.get("FERRYMAN_SIGNING_KEY") or "")
    if not key_file:
        raise ConfigError("--signing-key FILE is needed (or FERRYMAN_SIGNING_KEY)")
    url, method = str(args["url"]), str(args["method"]).upper()
    check_signable_url(url)
    if method not in SIGNABLE_METHODS:
        raise ConfigError(f"--method {method}: ferryman answers {', '.join(SIGNABLE_METHODS)}")
    key = SigningKey.load(key_file)
    expires_at = expires_in(str(args["expires"]), int(time.time()))
    print(key.sign_url(url, method, expires_at, once=bool(args["once"])))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="ferryman[%(process)d] %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    args = vars(build_parser().parse_args(argv))
    command = args.pop("command")
    try:
        if command == "sign":
            return sign_command(args)
        if command == "catalog":
            from ferryman.audit.catalog_command import catalog_command

            return catalog_command(args)
        if command == "get":
            from ferryman.get.command import get_command

            return get_command(args)
        if command in ("audit", "repair"):
            from ferryman.audit.command import audit_command, repair_command

            return audit_command(args) if command == "audit" else repair_command(args)
        config = build_config(args)  # argparse allows no other command: this is serve
        from ferryman.supervisor.arbiter import serve

        return serve(config)
    except ConfigError as exc:
        what = {"sign": "cannot sign", "audit": "cannot audit", "repair": "cannot repair",
                "catalog": "catalog", "get": "cannot get"}.get(command, "cannot start")  # fmt: skip
        logging.getLogger("ferryman").error("%s: %s", what, exc)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
