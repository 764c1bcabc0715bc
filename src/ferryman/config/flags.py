"""Command-line arguments made from the option table, for `serve` and the commands
that name the same stores (audit, repair, catalog).

Every value is left as text (None when not given): config/load.py parses the
one that wins, so a flag and its environment variable are read alike.
"""

from __future__ import annotations

import argparse
import re

from ferryman.config.options import CONFIG_FILE, OPTIONS, OPTIONS_BY_ATTR, Option


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """SOURCE, --config and every option, in the table's order."""
    source, *rest = OPTIONS
    for option in (source, CONFIG_FILE, *rest):
        add_argument(parser, option)


def add_option(parser: argparse.ArgumentParser, name: str, help: str | None = None) -> None:
    """One option of the table (by its flag's name) on another command; `help` says what
    it means there, when that differs."""
    add_argument(parser, OPTIONS_BY_ATTR[name.replace("-", "_")], help)


def add_argument(parser: argparse.ArgumentParser, option: Option, help: str | None = None) -> None:
    text = help if help == argparse.SUPPRESS else help_text(option, help)
    metavar = option.metavar or "VALUE"
    if option.positional:
        parser.add_argument(option.attr, nargs="?", default=None, metavar=option.flag, help=text)
    elif option.kind.many:
        parser.add_argument(option.flag, dest=option.attr, metavar=metavar, action="append",
                            help=text)  # fmt: skip
    elif option.switch:
        parser.add_argument(option.flag, dest=option.attr, action="store_const", const=True,
                            help=text)  # fmt: skip
    else:
        parser.add_argument(option.flag, dest=option.attr, metavar=metavar, help=text)


def help_text(option: Option, help: str | None = None) -> str:
    """The option's sentence (or `help`), its default and its environment variable."""
    if option.kind.many:
        suffix = f"env {option.env}, whitespace-separated"
    elif option.switch or option.default is None:  # the sentence says what none means
        suffix = f"env {option.env}"
    else:
        suffix = f"default: {plain(option.shown_default)}; env {option.env}"
    return f"{plain(help or option.help)} ({suffix})".replace("%", "%%")  # argparse formats %


def plain(markdown: str) -> str:
    """Help text for a terminal: `code` shown as 'code', but a number, a flag or an
    environment variable bare (404, --small-body, AWS_REGION)."""
    return _CODE.sub(lambda m: m[1] if _BARE.fullmatch(m[1]) else f"'{m[1]}'", markdown)


_CODE = re.compile(r"`([^`]*)`")
_BARE = re.compile(r"\d+|--[a-z0-9-]+|[A-Z][A-Z0-9_]+")
