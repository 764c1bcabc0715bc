"""docs/configuration.md's tables of options, made from ferryman's one option table.

    .venv/bin/python tools/config_doc.py --check   # exit 1, showing the difference, if stale
    .venv/bin/python tools/config_doc.py --write   # rewrite the tables in place

Each table sits between `<!-- options: SECTION -->` and `<!-- end of options -->`
and holds the options of that section (src/ferryman/config/options.py), in the
table's order. Everything outside the markers is written by hand.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from ferryman.config.options import CONFIG_FILE, OPTIONS, Option  # noqa: E402

DOC = ROOT / "docs" / "configuration.md"
START = "<!-- options: {section} -->"
END = "<!-- end of options -->"
_TABLE = re.compile(r"<!-- options: (\w+) -->\n.*?<!-- end of options -->", re.DOTALL)


def row(option: Option) -> str:
    flag = f"`{option.flag}`" + (" (positional)" if option.positional else "")
    if option.metavar and not option.positional:
        flag += f" {option.metavar}"
    shown = option.shown_default
    default = shown if shown == "none" else f"`{shown}`"
    takes = "a switch" if option.switch else option.kind.takes
    if option.kind.many:
        takes += ", repeatable"
    meaning = option.help + ("" if option.help.endswith(".") else ".")
    if option.more:
        meaning += " " + option.more
    cells = (flag, default, takes, f"`{option.env}`", meaning)
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def table(options: Iterable[Option], section: str) -> str:
    head = "| flag | default | value | environment | meaning |\n|---|---|---|---|---|"
    lines = [START.format(section=section), head]
    for option in options:
        if option.section == section:
            lines.append(row(option))
            if option.positional:  # the file of settings comes right after SOURCE
                lines.append(row(CONFIG_FILE))
    return "\n".join([*lines, END])


def generated(doc: str, options: Iterable[Option] = OPTIONS) -> str:
    """The doc with every table between markers made anew from `options`."""
    listed = tuple(options)
    return _TABLE.sub(lambda m: table(listed, m[1]), doc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", action="store_true", help="exit 1 if the doc is stale")
    action.add_argument("--write", action="store_true", help="rewrite the doc's tables")
    args = parser.parse_args()
    doc = DOC.read_text(encoding="utf-8")
    sections = {option.section for option in OPTIONS}
    missing = sorted(s for s in sections if START.format(section=s) not in doc)
    if missing:
        print(f"{DOC}: no table for {', '.join(missing)} (add {START} ... {END})")
        return 1
    fresh = generated(doc)
    if args.write:
        if fresh != doc:
            DOC.write_text(fresh, encoding="utf-8")
        return 0
    if fresh != doc:
        diff = difflib.unified_diff(doc.splitlines(), fresh.splitlines(), "doc", "table",
                                    lineterm="", n=0)  # fmt: skip
        print("\n".join(diff))
        print(f"{DOC.relative_to(ROOT)} differs from the option table: "
              "run python tools/config_doc.py --write")  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
