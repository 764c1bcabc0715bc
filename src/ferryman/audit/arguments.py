"""The command lines of `audit`, `repair` and `catalog`, apart from the commands:
building the parser for every command (`serve` too) must not load the audit's
machinery, which the server's arbiter would then carry in its memory."""

from __future__ import annotations

import argparse
from typing import Any

from ferryman.config.flags import add_option


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """SOURCE, --replica, --state-dir, --s3-endpoint, --inventory: shared by audit and repair."""
    parser.add_argument("source", help="the served directory, or s3://bucket[/prefix]")
    add_option(parser, "replica", help="a replica to check too (repeat for several)")
    add_option(parser, "state-dir", help="where the catalog is (none: as serve finds it)")
    add_option(parser, "catalog")
    add_option(parser, "s3-endpoint")
    parser.add_argument("--inventory", metavar="FILE",
                        help="what should be stored, instead of the catalog: sha256sum or "
                             "md5sum output, a BagIt manifest, or CSV/TSV")  # fmt: skip


def add_audit_parsers(commands: Any) -> None:
    """`audit` and `repair`."""
    audit = _store_command(commands, "audit", "check every copy against what should be stored",
                           deep="read and hash every copy",
                           report="also write FILE: .json, .csv or .html")  # fmt: skip
    audit.add_argument("--stale-after", metavar="AGE",
                       help="hash only copies not hashed within AGE (e.g. 30d)")  # fmt: skip
    audit.add_argument("--max-rate", metavar="BYTES",
                       help="read at most this many bytes a second (e.g. 100M)")  # fmt: skip
    repair = _store_command(commands, "repair", "mend bad copies from good ones",
                            deep="plan from an audit that reads and hashes every copy",
                            report="also write the plan and outcomes: .json")  # fmt: skip
    repair.add_argument("--apply", action="store_true",
                        help="carry the plan out (without it, print the plan only)")  # fmt: skip


def _store_command(
    commands: Any, name: str, summary: str, *, deep: str, report: str
) -> argparse.ArgumentParser:
    """A command over SOURCE and its replicas, with --deep and --report."""
    parser: argparse.ArgumentParser = commands.add_parser(name, help=summary)
    add_store_arguments(parser)
    parser.add_argument("--deep", action="store_true", help=deep)
    parser.add_argument("--report", metavar="FILE", help=report)
    return parser


def add_catalog_parser(commands: Any) -> None:
    catalog = commands.add_parser("catalog", help="import, scan, show or migrate the catalog")
    actions = catalog.add_subparsers(dest="action", required=True)
    imports = actions.add_parser("import", help="adopt an inventory as what should be stored")
    imports.add_argument("source", help="the served directory, or s3://bucket[/prefix]")
    imports.add_argument("--inventory", metavar="FILE", required=True)
    scan = actions.add_parser("scan", help="hash what SOURCE holds now and record it")
    scan.add_argument("source", help="the served directory, or s3://bucket[/prefix]")
    show = actions.add_parser("show", help="a key's entry, copies and history")
    show.add_argument("key", help="the key, relative to SOURCE: dir/file.bin")
    show.add_argument("--source", default=".", help="the served directory (default: .)")
    show.add_argument("--json", action="store_true", help="print JSON, for scripts")
    migrate = actions.add_parser("migrate", help="bring the catalog's schema up to date")
    migrate.add_argument("--source", default=".", help="the served directory (default: .)")
    runs = actions.add_parser("runs", help="the latest audit and repair runs and their progress")
    runs.add_argument("--source", default=".", help="the served directory (default: .)")
    runs.add_argument("--limit", type=int, default=10, help="how many runs (default: 10)")
    runs.add_argument("--json", action="store_true", help="print JSON, for scripts")
    for parser in (imports, scan, show, migrate, runs):
        add_option(parser, "state-dir", help="where the catalog is")
        add_option(parser, "catalog")
        add_option(parser, "s3-endpoint", help=argparse.SUPPRESS)
