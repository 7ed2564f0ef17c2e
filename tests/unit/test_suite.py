"""Tests that cannot fail are bugs of the suite: a test that defines a coroutine and never runs it
(write ``async def test_...``), and a test that asserts on elapsed time (the machine's load decides
it; bench/ measures time, tests check behaviour)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).parents[1]
CLOCKS = {"monotonic", "perf_counter", "process_time", "thread_time", "time"}


def defined_tests() -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for path in sorted(TESTS.rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_"):
                yield f"{path.relative_to(TESTS)}:{node.lineno} {node.name}", node


def is_clock_call(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr.removesuffix("_ns") in CLOCKS
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "time"
    )


def is_time_span(node: ast.AST, clocked: set[str]) -> bool:
    """A clock reading, or arithmetic on them (``time.monotonic() - started``); a reading passed
    into a call (``sweep(now=later)``) is a fixed time handed to the code, not a measured one."""
    if is_clock_call(node):
        return True
    if isinstance(node, ast.Name):
        return node.id in clocked
    if isinstance(node, ast.BinOp):
        return is_time_span(node.left, clocked) or is_time_span(node.right, clocked)
    if isinstance(node, ast.UnaryOp):
        return is_time_span(node.operand, clocked)
    return False


def test_no_test_defines_a_coroutine_it_never_runs() -> None:
    never_run = []
    for where, fn in defined_tests():
        for inner in (n for n in fn.body if isinstance(n, ast.AsyncFunctionDef)):
            used = [
                n for n in ast.walk(fn) if isinstance(n, ast.Name) and n.id == inner.name and n is not inner
            ]
            if not used:
                never_run.append(f"{where} defines {inner.name}()")
    assert not never_run, never_run


def test_no_test_asserts_on_elapsed_time() -> None:
    timed = []
    for where, fn in defined_tests():
        clocked = {  # names bound to a clock reading in the test
            t.id
            for n in ast.walk(fn)
            if isinstance(n, ast.Assign) and is_clock_call(n.value)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        for check in (n for n in ast.walk(fn) if isinstance(n, ast.Assert)):
            compares = (n for n in ast.walk(check.test) if isinstance(n, ast.Compare))
            if any(is_time_span(x, clocked) for c in compares for x in (c.left, *c.comparators)):
                timed.append(f"{where}:{check.lineno}")
    assert not timed, timed
