"""The package's layering as a contract: no import cycle among serve_app's modules, and Ray only in
the Serve layer (engines, pipeline and routes are testable without it)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "serve_app"
SERVE_LAYER = {"serve_app.app", "serve_app.deployments", "serve_app.serve_backend"}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module this file imports, TYPE_CHECKING and function-level imports included."""
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    paths = {_module(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in paths and m != name} for name, path in paths.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_is_read_from_the_package() -> None:
    graph = _graph()
    assert "serve_app.service" in graph["serve_app.api"]
    assert "serve_app.pipeline" in graph["serve_app.service"]
    assert "serve_app.datatypes" in graph["serve_app.pipeline"]


def test_no_import_cycle_among_serve_app_modules() -> None:
    graph = _graph()
    # ``from . import __version__`` in a module that its package's __init__ imports is no cycle
    # of the code's layers: edges from a module to a package it lives in are left out.
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_ray_is_imported_only_by_the_serve_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        if _module(path) in SERVE_LAYER:
            continue
        ray = sorted(m for m in _imports(path) if m == "ray" or m.startswith("ray."))
        assert not ray, f"{_module(path)} imports {ray}"


def test_the_http_layer_does_not_reach_into_the_engines() -> None:
    """Routes and the document service name the shared vocabulary (``datatypes``), never an engine
    module: what runs behind the models' clients can change without touching them."""
    graph = _graph()
    http = {"serve_app.api", "serve_app.job_routes", "serve_app.chat", "serve_app.bodies",
            "serve_app.backend", "serve_app.service", "serve_app.pipeline", "serve_app.storage"}  # fmt: skip

    def reach(name: str, seen: set[str]) -> set[str]:
        for nxt in graph[name] - seen:
            seen.add(nxt)
            reach(nxt, seen)
        return seen

    for name in sorted(http):
        engines = sorted(m for m in reach(name, set()) if m.startswith("serve_app.engines"))
        assert not engines, f"{name} reaches {engines}"
    # S3 is a leaf below the reading: it knows bytes and keys, not what a document's options are.
    assert not reach("serve_app.storage", set()) & {
        "serve_app.pipeline",
        "serve_app.service",
        "serve_app.results",
    }
