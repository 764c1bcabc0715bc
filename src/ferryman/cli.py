"""The command line: `ferryman serve [SOURCE] [flags]`.

Exit status: 0 after a clean stop, 1 on an unexpected failure, 2 when the
command line or configuration is wrong or the server cannot start (port in
use, unreadable SOURCE): a boot failure that no restart would fix.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ferryman import __version__
from ferryman.config import OPTIONS, build_config
from ferryman.errors import ConfigError

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


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
            from ferryman.server.worker import run

            return run(config)
    except ConfigError as exc:
        logging.getLogger("ferryman").error("cannot start: %s", exc)
        return EXIT_CONFIG
    return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
