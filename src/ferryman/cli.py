"""The command line: `ferryman serve [SOURCE] [flags]`.

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
import sys
from collections.abc import Sequence

from ferryman import __version__
from ferryman.config import OPTIONS, build_config
from ferryman.errors import ConfigError

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG, EXIT_BUDGET = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferryman", description="HTTP file server")
    parser.add_argument("--version", action="version", version=f"ferryman {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a directory over HTTP")
    serve.add_argument("source", nargs="?", default=None,
                       help="directory to serve (default: the current directory)")  # fmt: skip
    serve.add_argument("--config", metavar="FILE", help="TOML file of settings (flags override)")
    for option in OPTIONS:
        flag = f"--{option.name}"
        if option.flag_takes_value:
            text = f"{option.help} (default: {option.default}; env {option.env})"
            serve.add_argument(flag, dest=option.attr, metavar="VALUE", help=text)
        else:
            text = f"{option.help} (env {option.env})"
            serve.add_argument(flag, dest=option.attr, action="store_const", const=True, help=text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="ferryman[%(process)d] %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    args = vars(build_parser().parse_args(argv))
    command = args.pop("command")
    try:
        config = build_config(args)
        if command == "serve":
            from ferryman.supervisor.arbiter import serve

            return serve(config)
    except ConfigError as exc:
        logging.getLogger("ferryman").error("cannot start: %s", exc)
        return EXIT_CONFIG
    return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
