"""Engines: pure Python model wrappers, importable and testable without Ray.

Each engine imports its heavy libraries lazily, so choosing one never imports the others.
"""

from __future__ import annotations

from ..config import LayoutArgs, RecognizerArgs
from .base import LayoutEngine, RecognizerEngine


def build_layout(args: LayoutArgs) -> LayoutEngine:
    if args.engine == "rapid_layout":
        from .rapid import RapidLayoutEngine

        return RapidLayoutEngine(args)
    raise ValueError(f"unknown layout engine {args.engine!r}")


def build_recognizer(args: RecognizerArgs) -> RecognizerEngine:
    if args.engine == "cpu":
        from .cpu import CpuRecognizer

        return CpuRecognizer(args)
    raise ValueError(f"unknown recognizer engine {args.engine!r}")
