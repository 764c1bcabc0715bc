"""No compiled module awaits while it handles an exception.

mypyc keeps the exception being handled in the thread's exception state
for the whole `except` (or `finally`) block and puts the previous one back
when the block ends. An `await` inside the block suspends the coroutine
with that state set; the loop runs other requests meanwhile, which set and
restore the same state, and when the first one resumes it restores an
exception that may since have been freed. Under concurrent S3 404s that
was "invalid exception object", 500s for every later miss and a worker
killed by SIGSEGV. Interpreted code saves the state per frame and is safe,
so the rule binds the modules `native.MODULES` compiles: take what the
handler needs out of the block and await after it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ferryman
from ferryman import native

SOURCE = Path(ferryman.__file__).parent
SUSPENDS = (ast.Await, ast.AsyncFor, ast.AsyncWith)
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _own_nodes(body: list[ast.stmt]) -> list[ast.AST]:
    """Every node of `body`, not descending into functions or classes defined there."""
    found: list[ast.AST] = []
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, SCOPES):
            continue
        found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def awaits_while_handling(source: str) -> list[str]:
    """`line: except|finally` for each suspension inside a handler or finally block."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Try | ast.TryStar):
            continue
        blocks = [("except", handler.body) for handler in node.handlers]
        blocks.append(("finally", node.finalbody))
        for kind, body in blocks:
            found += [f"{n.lineno}: {kind}" for n in _own_nodes(body) if isinstance(n, SUSPENDS)]
    return sorted(found)


@pytest.mark.parametrize("module", native.MODULES)
def test_no_compiled_module_awaits_in_an_except_or_finally_block(module: str) -> None:
    path = SOURCE / (module.removeprefix("ferryman.").replace(".", "/") + ".py")
    assert awaits_while_handling(path.read_text()) == []


def test_the_scan_finds_awaits_in_handlers_and_finally_but_not_in_nested_functions() -> None:
    source = """
async def f(x):
    try:
        await x
    except ValueError:
        await x
    except KeyError:
        async for _ in x:
            pass
    finally:
        async with x:
            pass
    try:
        pass
    except Exception:
        async def later():
            await x
        missing = later
    await missing()
"""
    assert awaits_while_handling(source) == ["11: finally", "6: except", "8: except"]
