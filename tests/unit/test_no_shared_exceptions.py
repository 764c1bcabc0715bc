"""No exception instance is kept to be raised again.

Raising an exception appends the frames it passes through to its
`__traceback__`; an instance kept at module level, in a class or on an
object and raised once per request grows with every request, and each
traceback pins its frames and their locals. A 404 answered that way cost
about 3 KiB per request (1.1 GiB after 400,000 requests).

The scan finds every assignment of a call whose callee is an exception
class to a module name, a class attribute or any attribute (`self.x`),
resolving the callee in the module's own namespace. Locals are fine: a
function that makes its error and raises it makes a new one each time.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

import pytest

import ferryman
from ferryman import native

SOURCE = Path(ferryman.__file__).parent


def modules() -> list[str]:
    found = []
    for info in pkgutil.walk_packages([str(SOURCE)], prefix="ferryman."):
        if "_mypyc" in info.name or info.name.endswith("__mypyc"):
            continue
        if info.name in native.C_MODULES:  # written in C: no Python source to scan
            continue
        found.append(info.name)
    return sorted(found)


def source_of(name: str) -> Path:
    relative = name.removeprefix("ferryman.").replace(".", "/")
    path = SOURCE / f"{relative}.py"
    return path if path.exists() else SOURCE / relative / "__init__.py"


def resolve(node: ast.expr, namespace: dict[str, object]) -> object | None:
    """The object a Name or dotted Attribute names in `namespace`, or None."""
    if isinstance(node, ast.Name):
        return namespace.get(node.id, getattr(builtins, node.id, None))
    if isinstance(node, ast.Attribute):
        owner = resolve(node.value, namespace)
        return getattr(owner, node.attr, None) if owner is not None else None
    return None


def is_exception_class(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseException)


def kept_exceptions(tree: ast.Module, module: ModuleType) -> list[str]:
    """`line: target` for each exception instance kept beyond one call."""
    namespace = vars(module)
    found = []

    def check(node: ast.stmt, kept_scope: bool) -> None:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        if not isinstance(value, ast.Call) or not is_exception_class(
            resolve(value.func, namespace)
        ):
            return
        for target in targets:
            if kept_scope or isinstance(target, ast.Attribute):
                found.append(f"{node.lineno}: {ast.unparse(target)} = {ast.unparse(value)}")

    def walk(body: list[ast.stmt], kept_scope: bool) -> None:
        for node in body:
            check(node, kept_scope)
            if isinstance(node, ast.ClassDef):
                walk(node.body, True)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                walk(node.body, False)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    inner = getattr(node, field, None)
                    if isinstance(inner, list):
                        walk([n for n in inner if isinstance(n, ast.stmt)], kept_scope)
                for handler in getattr(node, "handlers", []):
                    walk(handler.body, kept_scope)

    walk(tree.body, True)
    return found


MODULES = modules()


def test_every_package_is_scanned() -> None:
    scanned = {"ferryman.app.files", "ferryman.app.archive", "ferryman.app.application"}
    assert scanned | {"ferryman.app.root"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_no_exception_instance_is_kept(name: str) -> None:
    module = importlib.import_module(name)
    tree = ast.parse(source_of(name).read_text())
    assert kept_exceptions(tree, module) == [], (
        f"{name} keeps exception instances; make a new one per raise"
    )


@pytest.mark.parametrize(
    "code",
    [
        "X = HttpError(404, 'not_found')",
        "class A:\n    E = HttpError(404, 'not_found')",
        "class A:\n    def __init__(self):\n        self.e = errors.HttpError(405, 'x')",
        "if True:\n    X: HttpError = HttpError(404, 'n')",
        "def f():\n    global_table['k'] = 1\n    self.err = ValueError('v')",
    ],
)
def test_the_scan_finds_kept_instances(code: str) -> None:
    """The scan itself can fail: each of these keeps an instance."""
    module = importlib.import_module("ferryman.errors")
    probe = ModuleType("probe")
    vars(probe).update(vars(module), errors=module)
    assert kept_exceptions(ast.parse(code), probe)


def test_the_scan_allows_errors_made_per_call() -> None:
    code = "def f():\n    exc = HttpError(404, 'n')\n    raise exc\nclass B:\n    n = int('3')"
    module = importlib.import_module("ferryman.errors")
    assert kept_exceptions(ast.parse(code), module) == []
