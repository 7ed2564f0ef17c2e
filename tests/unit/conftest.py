"""Unit tests run without Ray: importing it here is an error, which proves the layering."""

from __future__ import annotations

import sys

import pytest

from serve_app.config import AppArgs, load_args


@pytest.fixture(autouse=True, scope="module")
def _block_ray():
    saved = {k: v for k, v in sys.modules.items() if k == "ray" or k.startswith("ray.")}
    for k in saved:
        del sys.modules[k]
    sys.modules["ray"] = None  # type: ignore[assignment]
    yield
    del sys.modules["ray"]
    sys.modules.update(saved)


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
