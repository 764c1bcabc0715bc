"""ferryman.http does no I/O: it imports nothing that touches the outside world."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ferryman.http

HTTP_DIR = Path(ferryman.http.__file__).parent
FORBIDDEN = {
    "asyncio", "os", "socket", "select", "selectors", "ssl", "subprocess", "threading",
    "time", "io", "pathlib", "shutil", "tempfile", "sqlite3", "signal", "uvloop",
    "ferryman.server", "ferryman.app", "ferryman.stores", "ferryman.cache", "ferryman.config",
}  # fmt: skip
MODULES = sorted(HTTP_DIR.glob("*.py"))


def imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_modules_found() -> None:
    assert {p.name for p in MODULES} >= {"parser.py", "ranges.py", "conditional.py", "body.py"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_io_imports(path: Path) -> None:
    bad = {
        name for name in imported_names(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    }  # fmt: skip
    assert not bad, f"{path.name} imports {sorted(bad)}"
