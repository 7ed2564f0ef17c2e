"""cluster.yaml's setup commands install exactly what pyproject pins for the GPU nodes: the `gpu`
extra (paddleocr, vllm) through this repository's own install, no second pin that could drift; its
image is of the Ray version pyproject pins; paddlepaddle-gpu as docs/gpu.md installs it. (Ray's own
validator checks the file in tests/integration/test_configs.py.)"""

from __future__ import annotations

import copy
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).parents[2]
COMMAND_LISTS = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands")
# pip options that take a value (the value is no requirement).
VALUED = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-c", "--constraint", "-r"}
VALUED |= {"--requirement", "--target", "-t", "--prefix", "--root", "--src", "--upgrade-strategy"}


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def cluster_config() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def commands(config: dict) -> Iterator[str]:
    lists = [config.get(key, []) for key in COMMAND_LISTS]
    for node_type in config.get("available_node_types", {}).values():
        lists += [node_type.get(key, []) for key in COMMAND_LISTS]
    for commands_ in lists:
        for command in commands_:
            yield from (part.strip() for part in re.split(r"&&|\|\||;", command) if part.strip())


def pip_install_args(command: str) -> list[str] | None:
    """The requirement arguments of a `pip install` (pip, pip3, python -m pip, uv pip), or None."""
    words = shlex.split(command)
    while words and (words[0] in ("sudo", "env") or re.fullmatch(r"\w+=.*", words[0])):
        words = words[1:]  # sudo, env, VAR=value before the program
    for prefix in (["pip", "install"], ["pip3", "install"], ["uv", "pip", "install"]):
        if words[: len(prefix)] == prefix:
            rest = words[len(prefix) :]
            break
    else:
        if len(words) > 3 and words[0].startswith("python") and words[1:4] == ["-m", "pip", "install"]:
            rest = words[4:]
        else:
            return None
    args, skip = [], False
    for word in rest:
        if skip:
            skip = False
        elif word in VALUED:
            skip = True
        elif word in ("-e", "--editable"):
            continue  # its value is a requirement (a path here)
        elif not word.startswith("-"):
            args.append(word)
    return args


def this_project(config: dict, arg: str) -> set[str] | None:
    """The extras of a requirement that is this repository (a remote path file_mounts fills from
    the folder of cluster.yaml), or None for any other requirement."""
    match = re.fullmatch(r"([^\[\]]+)(?:\[([^\]]*)\])?", arg)
    if not match or not match.group(1).startswith(("/", "~", ".")):
        return None
    path, extras = PurePosixPath(match.group(1)), match.group(2) or ""
    for remote, local in config.get("file_mounts", {}).items():
        if PurePosixPath(remote) == path and (ROOT / local).resolve() == ROOT.resolve():
            return {e.strip() for e in extras.split(",") if e.strip()}
    raise AssertionError(
        f"cluster.yaml installs {arg}, which no file_mounts entry fills from this repository"
    )


def installed(config: dict) -> dict[str, set[str]]:
    """Distribution name -> the version specifiers the setup commands install it with (the
    project's own requirements and those of its extras when it installs this repository)."""
    project = pyproject()
    found: dict[str, set[str]] = {}
    for command in commands(config):
        for arg in pip_install_args(command) or []:
            extras = this_project(config, arg)
            if extras is None:
                requirements = [arg]
            else:
                unknown = extras - set(project["optional-dependencies"])
                assert not unknown, f"cluster.yaml asks for extras pyproject does not have: {unknown}"
                requirements = [*project["dependencies"]]
                for extra in sorted(extras):
                    requirements += project["optional-dependencies"][extra]
            for requirement in requirements:
                parsed = Requirement(requirement)
                found.setdefault(norm(parsed.name), set()).add(str(parsed.specifier))
    return found


def pin_mismatches(config: dict) -> list[str]:
    have = installed(config)
    problems = []
    for pin in pyproject()["optional-dependencies"]["gpu"]:
        wanted = Requirement(pin)
        specs = have.get(norm(wanted.name))
        if specs != {str(wanted.specifier)}:
            problems.append(
                f"{wanted.name}: pyproject's gpu extra pins {wanted.specifier}, cluster.yaml {specs}"
            )
    return problems


def test_the_setup_commands_install_exactly_the_gpu_extras_pins() -> None:
    assert pin_mismatches(cluster_config()) == []


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (["pip install -e '/home/ray/serve_app[cpu]'"], "paddleocr"),
        (["pip install -e '/home/ray/serve_app[cpu,gpu]'", "pip install -q vllm==0.31.0"], "vllm"),
        (["pip install -e /home/ray/serve_app && pip3 install 'paddleocr>=3.3'"], "paddleocr"),
        (["python -m pip install paddleocr==3.7.0"], "vllm"),
    ],
)
def test_a_setup_that_drifts_from_the_pins_is_caught(setup: list[str], expected: str) -> None:
    config = copy.deepcopy(cluster_config())
    config["setup_commands"] = setup
    assert any(problem.startswith(f"{expected}:") for problem in pin_mismatches(config))


def test_the_image_is_of_the_ray_and_python_that_pyproject_pins() -> None:
    (ray,) = [Requirement(r) for r in pyproject()["dependencies"] if norm(Requirement(r).name) == "ray"]
    (spec,) = ray.specifier
    assert spec.operator == "=="
    image = cluster_config()["docker"]["image"]
    name, tag = image.rsplit(":", 1)
    assert name == "rayproject/ray"
    version, python, *_ = tag.split("-")
    assert version == spec.version, f"{image} is not Ray {spec.version}"
    assert python == "py311" and "<3.12" in pyproject()["requires-python"]


def test_paddlepaddle_gpu_is_installed_as_docs_gpu_md_says() -> None:
    """It is not on PyPI (no extra can pin it): the same requirement and index as the docs."""
    pattern = re.compile(r"pip install (?:-q )?'(paddlepaddle-gpu[^']*)' -i (\S+)")
    docs = pattern.findall((ROOT / "docs/gpu.md").read_text())
    cluster = [m for c in commands(cluster_config()) for m in pattern.findall(c)]
    assert cluster, "cluster.yaml does not install paddlepaddle-gpu"
    assert set(cluster) <= set(docs), f"cluster.yaml: {cluster}, docs/gpu.md: {docs}"
