"""Engines: pure Python model wrappers, importable and testable without Ray.

Each engine imports its heavy libraries lazily, so choosing one never imports the others.
"""

from __future__ import annotations

from ..config import CpuRecognizerArgs, PaddleLayoutArgs, RapidLayoutArgs, VllmRecognizerArgs
from .base import LayoutEngine, RecognizerEngine


def build_layout(args: RapidLayoutArgs | PaddleLayoutArgs) -> LayoutEngine:
    if isinstance(args, PaddleLayoutArgs):
        from .paddle import PaddleLayoutEngine

        return PaddleLayoutEngine(args)
    from .rapid import RapidLayoutEngine

    return RapidLayoutEngine(args)


def build_recognizer(args: CpuRecognizerArgs | VllmRecognizerArgs) -> RecognizerEngine:
    if isinstance(args, VllmRecognizerArgs):
        from .vlm import VllmRecognizer

        return VllmRecognizer(args)
    from .cpu import CpuRecognizer

    return CpuRecognizer(args)
