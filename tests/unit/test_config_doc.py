"""docs/configuration.md's tables are the option table: any difference fails here.

tools/config_doc.py makes them (`--write`) and checks them (`--check`); these
tests run the check as a developer would, and show that a change of any field
of any option (name, default, environment variable, help, the rest of its
text) makes the doc stale.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from ferryman.config.options import OPTIONS, Option

ROOT = Path(__file__).resolve().parent.parent.parent
TOOL = ROOT / "tools" / "config_doc.py"
DOC = ROOT / "docs" / "configuration.md"


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("config_doc", TOOL)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_doc_is_what_the_table_makes() -> None:
    done = subprocess.run([sys.executable, str(TOOL), "--check"], capture_output=True,
                          text=True, cwd=ROOT, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_option_has_its_row(tool: ModuleType) -> None:
    doc = DOC.read_text(encoding="utf-8")
    for option in OPTIONS:
        row = next(line for line in doc.splitlines() if line.startswith(f"| `{option.flag}`"))
        assert f"`{option.env}`" in row, option.name
        assert option.help in row, option.name
        assert (option.shown_default == "none") or f"`{option.shown_default}`" in row


def changed(option: Option, field: str) -> Option:
    if field == "default":
        value = option.default
        other: dict[type, Callable[[], object]] = {
            bool: lambda: not value, int: lambda: value + 1, float: lambda: value + 1,
            str: lambda: value + "x", tuple: lambda: (*value, "x"),
        }  # fmt: skip
        return dataclasses.replace(option, default=other.get(type(value), lambda: "x")())
    if field == "name":
        return dataclasses.replace(option, name=option.name + "-renamed")
    return dataclasses.replace(option, **{field: getattr(option, field) + " changed"})


@pytest.mark.parametrize("field", ["name", "default", "help", "more"])
@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_a_change_of_any_field_makes_the_doc_stale(
    tool: ModuleType, option: Option, field: str
) -> None:
    doc = DOC.read_text(encoding="utf-8")
    options = [changed(o, field) if o is option else o for o in OPTIONS]
    assert tool.generated(doc, options) != doc


@pytest.mark.parametrize(
    ("before", "after"),
    [("`FERRYMAN_PORT`", "`FERRYMAN_PORTS`"), ("| `8000` |", "| `8080` |"),
     ("| `--max-ranges` |", "| `--max-range` |"), ("address to listen on.", "address.")],
)  # fmt: skip
def test_a_doc_edited_by_hand_is_stale(tool: ModuleType, before: str, after: str) -> None:
    doc = DOC.read_text(encoding="utf-8")
    edited = doc.replace(before, after, 1)
    assert edited != doc
    assert tool.generated(edited) == doc  # --write puts the table's text back
