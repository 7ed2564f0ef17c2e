"""What reading PDFs in their own process (serve_app/pdf_process.py) costs: every page of the PDFs in
tests/ rendered with its characters, in this process (PDFium called directly, as before) and through
the PDF process, alternately in one run.

    python -m bench.pdf_process [--rounds N] [--dpi DPI]

Prints ms a page for each way and their ratio (through the process / in this process), and the
cold start of a new PDF process (what the first PDF after a crash waits).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from serve_app.pdf_process import PdfProcess, _page_chars_or_none

TESTS = Path(__file__).parents[1] / "tests"


def in_this_process(data: bytes, scale: float) -> int:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    try:
        for index in range(len(pdf)):
            page = pdf[index]
            try:
                image = np.ascontiguousarray(page.render(scale=scale).to_pil().convert("RGB"))
                _page_chars_or_none(page, index, image.shape[1], image.shape[0])
            finally:
                page.close()
        return len(pdf)
    finally:
        pdf.close()


def through_the_process(process: PdfProcess, data: bytes, scale: float) -> int:
    handle = process.open(data)
    try:
        for index in range(handle.opened.page_count):
            handle.render(index, scale, True)
        return handle.opened.page_count
    finally:
        handle.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dpi", type=int, default=200)
    args = parser.parse_args()
    scale = args.dpi / 72
    files = sorted([*TESTS.glob("data/*.pdf"), *TESTS.glob("layers/*.pdf")])
    documents = [f.read_bytes() for f in files]
    started = time.perf_counter()
    process = PdfProcess(2 << 30)
    through_the_process(process, documents[0], 0.1)
    cold_ms = (time.perf_counter() - started) * 1000
    per_page: dict[str, list[float]] = {"in this process": [], "through the PDF process": []}
    for _ in range(args.rounds):
        for data in documents:
            for way, read in (
                ("in this process", lambda d: in_this_process(d, scale)),
                ("through the PDF process", lambda d: through_the_process(process, d, scale)),
            ):
                t = time.perf_counter()
                pages = read(data)
                per_page[way].append((time.perf_counter() - t) * 1000 / pages)
    process.stop()
    print(f"{len(files)} PDFs from tests/, {args.rounds} rounds, {args.dpi} DPI, pages with their characters")
    means = {way: statistics.mean(ms) for way, ms in per_page.items()}
    for way, ms in means.items():
        print(f"  {way:<24} {ms:7.1f} ms a page (median {statistics.median(per_page[way]):.1f})")
    ratio = means["through the PDF process"] / means["in this process"]
    print(f"  ratio {ratio:.2f}x; a new PDF process starts in {cold_ms:.0f} ms")


if __name__ == "__main__":
    main()
