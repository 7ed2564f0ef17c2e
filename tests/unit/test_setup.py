"""The README's commands install every program the code calls: each executable named in a
``shutil.which`` or subprocess call (serve_app, bench, scripts, tests) comes either from the venv
(pip), from a Debian package that ``scripts/setup.sh`` installs or from an essential one (dpkg),
never from a hand-installed tool."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
RUNNERS = {"run", "Popen", "call", "check_call", "check_output", "create_subprocess_exec", "which"}
# Programs of a GPU box's NVIDIA driver: the GPU kit (bench/gpu_check.py) looks for them and says so
# where they are missing; no setup installs a driver.
GPU_DRIVER = {"nvidia-smi"}


def setup_packages() -> list[str]:
    lists = re.findall(
        r"^(?:test_)?debian_packages=\(([^)]*)\)", (ROOT / "scripts" / "setup.sh").read_text(), re.M
    )
    assert len(lists) == 2, "scripts/setup.sh lists its Debian packages in (test_)debian_packages=(...)"
    return " ".join(lists).split()


def called_executables() -> dict[str, str]:
    """Program names the code runs (the first literal of an argv, or a which) -> where."""
    found: dict[str, str] = {}
    for folder in ("serve_app", "bench", "scripts", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                if node.func.attr not in RUNNERS or not node.args:
                    continue
                first = node.args[0]
                if isinstance(first, ast.List | ast.Tuple) and first.elts:
                    first = first.elts[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.setdefault(first.value, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def owner(path: str) -> str | None:
    for candidate in dict.fromkeys((path, os.path.realpath(path))):
        done = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout.split(":")[0]
    return None


def essential(package: str) -> bool:
    """Debian's essential packages (dpkg, coreutils...) are on every Debian system."""
    done = subprocess.run(["dpkg-query", "-W", "-f=${Essential}", package], capture_output=True, text=True)
    return done.stdout.strip() == "yes"


def test_every_program_the_code_calls_is_installed_by_the_setup() -> None:
    programs = called_executables()
    assert {"tesseract", "weed"} <= set(programs), programs  # the scan sees what bench/ and s3_dev run
    venv_bin = str(Path(sys.executable).parent)
    packages = setup_packages()
    wrong = {}
    for program, where in programs.items():
        if program in GPU_DRIVER:
            continue
        path = shutil.which(program, path=venv_bin + os.pathsep + os.environ.get("PATH", ""))
        if path is None:
            wrong[program] = f"{where}: not installed"
        elif Path(path).parent == Path(venv_bin):
            continue  # a pip package's
        elif shutil.which("dpkg") is not None:
            package = owner(path)
            if package not in packages and not (package and essential(package)):
                wrong[program] = f"{where}: {path} is from {package!r}, not in setup.sh's {packages}"
    assert not wrong, wrong
