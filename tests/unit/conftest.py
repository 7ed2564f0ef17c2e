"""Unit tests run without Ray: importing it here is an error, which proves the layering. The block
holds while a unit test module is imported (collection: a module-level ``import ray`` fails) and
while its tests run, whatever else the session has imported before."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from serve_app.config import AppArgs, load_args


@contextmanager
def ray_blocked() -> Iterator[None]:
    saved = {k: v for k, v in sys.modules.items() if k == "ray" or k.startswith("ray.")}
    for k in saved:
        del sys.modules[k]
    sys.modules["ray"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        del sys.modules["ray"]
        sys.modules.update(saved)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # type: ignore[no-untyped-def]
    if not isinstance(collector, pytest.Module):
        return (yield)
    with ray_blocked():
        return (yield)


@pytest.fixture(autouse=True, scope="module")
def _block_ray() -> Iterator[None]:
    with ray_blocked():
        yield


@pytest.fixture
def make_args():
    def make(**overrides) -> AppArgs:
        return load_args(overrides, environ={})

    return make


@pytest.fixture(scope="session")
def args() -> AppArgs:
    return AppArgs()


@pytest.fixture(scope="session")
def engines(args: AppArgs):
    from serve_app.engines import build_layout, build_recognizer

    layout, recognizer = build_layout(args.layout), build_recognizer(args.recognizer)
    layout.start()
    recognizer.start()
    yield layout, recognizer
    recognizer.shutdown()
