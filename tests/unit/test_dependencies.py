"""What `make run` installs (the base dependencies and the cpu extra, with what they pull in) is
enough to import the service: every module serve_app imports at load time must come from there."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).parents[2]


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", Requirement(requirement).name).lower()


def installed_closure(requirements: list[str]) -> set[str]:
    """The distributions these requirements bring, following the installed packages' own needs."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = _name(str(req))
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        try:
            needs = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for need in map(Requirement, needs):
            # A need applies with no extra asked, or with one of the extras this one was asked with.
            if need.marker is None or any(need.marker.evaluate({"extra": e}) for e in {"", *req.extras}):
                todo.append(need)
    return {k.split("[")[0] for k in seen}


def load_time_imports() -> dict[str, str]:
    """Top-level modules imported at module level anywhere in serve_app/ -> the file."""
    found: dict[str, str] = {}
    for path in (ROOT / "serve_app").rglob("*.py"):
        for node in ast.parse(path.read_text()).body:  # module level only: engines import lazily
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_the_run_install_covers_every_module_imported_at_load_time() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    closure = installed_closure(project["dependencies"] + project["optional-dependencies"]["cpu"])
    owners = md.packages_distributions()
    missing = {}
    for module, where in load_time_imports().items():
        if module in sys.stdlib_module_names or module in ("serve_app", "__future__"):
            continue
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in owners.get(module, [module])}
        if not dists & closure:
            missing[module] = where
    assert not missing, f"imported at load time but not installed by `make run`: {missing}"
