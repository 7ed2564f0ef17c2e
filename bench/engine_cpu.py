"""Where the CPU goes: ``bench.pages`` with every engine call's thread CPU added up by part.

    python -m bench.engine_cpu [the arguments of bench.pages]

Prints bench.pages' lines, then one line per part (tesseract per language and page segmentation
mode, RapidOCR with its detector or on known lines, layout): CPU seconds and calls.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from bench import pages
from serve_app.engines import rapid, tesseract

cpu: defaultdict[str, float] = defaultdict(float)
calls: Counter[str] = Counter()


def _count(cls: type, method: str, part: Callable[..., str]) -> None:
    original = getattr(cls, method)

    def counted(self: Any, *args: Any) -> Any:
        started = time.thread_time()
        try:
            return original(self, *args)
        finally:
            name = part(*args)
            cpu[name] += time.thread_time() - started
            calls[name] += 1

    setattr(cls, method, counted)


def _rapid_part(image: Any, lines: Any = ()) -> str:
    return "rapidocr on lines" if lines and rapid._single_lines(lines) else "rapidocr with detector"


def main() -> None:
    _count(
        tesseract.TesseractReader,
        "read",
        lambda image, lang, whole_page=False: f"tesseract {lang}" + (" (page)" if whole_page else ""),
    )
    _count(rapid.RapidOcrReader, "read", _rapid_part)
    _count(rapid.RapidLayoutEngine, "_detect_one", lambda image: "layout")
    asyncio.run(pages.main())
    for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"{name:28s} {seconds:8.1f} CPU s  {calls[name]:5d} calls")


if __name__ == "__main__":
    main()
