"""Engines: pure Python model wrappers, importable and testable without Ray.

Each engine imports its heavy libraries lazily, so choosing one never imports the others.
"""

from __future__ import annotations

from ..config import CpuRecognizerArgs, LayoutArgs, VllmRecognizerArgs
from .base import LayoutEngine, RecognizerEngine


def build_layout(args: LayoutArgs) -> LayoutEngine:
    if args.engine == "rapid_layout":
        from .rapid import RapidLayoutEngine

        return RapidLayoutEngine(args)
    raise ValueError(f"unknown layout engine {args.engine!r}")


def build_recognizer(args: CpuRecognizerArgs | VllmRecognizerArgs) -> RecognizerEngine:
    if isinstance(args, VllmRecognizerArgs):
        from .vlm import VllmRecognizer

        return VllmRecognizer(args)
    from .cpu import CpuRecognizer

    return CpuRecognizer(args)
