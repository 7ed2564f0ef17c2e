"""A PDF read from its text layer against the same PDF OCR'd, page by page, in one run (in-process,
the same code as the service, no Ray/HTTP).

    python -m bench.text_layer [EVALDATA_DIR] [--only SUBSTRING] [--out FILE.jsonl] [--config YAML]

Pages: every evaldata page with a ``*.source.pdf`` (born-digital), and the PDFs of tests/layers with
broken layers (invisible OCR layer over a scan, cp1251 mojibake, hidden text, private-use code
points, a mixed document).
Each is read three ways: ``text_layer`` auto, auto without the layout model (``layout: false``: the
page's layer in its drawing order, one block a page), and off (OCR, as the same page sent as an
image). For each: CER against the ground truth (in reading order; PDF ground truth follows the
file's drawing order), WER of the words as a bag (order left out), seconds and CPU seconds (every
thread of this process) a page, and the share of blocks read from the layer. Prints a line a page,
then the means of each group.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

from bench.pages import CPU_CONFIG, DEFAULT_DIR, started_engines
from bench.split import half
from bench.textmetrics import bag_wer, cer
from serve_app.assemble import page_text
from serve_app.documents import Document
from serve_app.local import LocalLayout
from serve_app.pipeline import Options, process_document

TEST_DATA = Path(__file__).parents[1] / "tests" / "layers"
# tests/layers PDFs: (file, dpi); the invisible-layer scan is a 24-inch-wide page.
BROKEN = [
    ("layer_invisible_ocr_scan.pdf", 100),
    ("layer_cp1251_no_tounicode.pdf", 200),
    ("layer_hidden_text.pdf", 200),
    ("layer_private_use.pdf", 200),
    ("mixed_scan_and_text.pdf", 200),
]

# As the service asks (its ``ocr_tasks`` come from the config: a VLM's tables are read by the VLM).
MODES = {
    "auto": Options(text_layer="auto"),
    "auto_no_layout": Options(text_layer="auto", layout=False),
    "off": Options(text_layer="off"),
}


def pages(evaldata: Path) -> list[tuple[str, str, Path, int, str]]:
    """(id, group, pdf, dpi, ground truth) of each document."""
    out = []
    for line in (evaldata / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        image = evaldata / entry["image"]
        pdf = image.parent / (image.name.rsplit(".", 1)[0] + ".source.pdf")
        if pdf.exists():
            truth = (image.parent / (image.name.rsplit(".", 1)[0] + ".gt.txt")).read_text()
            out.append((entry["id"], half(entry["source"]), pdf, 200, truth))
    for name, dpi in BROKEN:
        truth = (TEST_DATA / name.replace(".pdf", ".gt.txt")).read_text()
        out.append((name.removesuffix(".pdf"), "broken layers", TEST_DATA / name, dpi, truth))
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--only", default="")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--config", type=Path, default=CPU_CONFIG, help="serve config whose engines to run")
    opts = parser.parse_args()
    args, layout, recognizer = started_engines(opts.config)
    rows = []
    out = opts.out.open("w") if opts.out else None
    for doc_id, group, path, dpi, truth in pages(opts.dir):
        if opts.only not in doc_id:
            continue
        row: dict[str, object] = {"id": doc_id, "group": group}
        for mode, asked in MODES.items():
            options = replace(asked, ocr_tasks=args.text_layer_ocr_tasks)
            doc = Document(path.read_bytes(), args.limits, dpi)
            indices = doc.select(None)
            started, cpu_started = time.perf_counter(), time.process_time()
            read = await process_document(doc, indices, options, LocalLayout(layout), recognizer, 1)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            doc.close()
            blocks = [b for p in read for b in p.blocks]
            text = "\n\n".join(page_text(p) for p in read)
            row[mode] = {
                "cer": round(cer(text, truth), 4),
                "bag_wer": round(bag_wer(text, truth), 4),
                "seconds": round(seconds / len(indices), 3),
                "cpu_seconds": round(cpu / len(indices), 3),
                "from_layer": round(sum(b.source == "text_layer" for b in blocks) / max(1, len(blocks)), 3),
            }
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
        if out:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    for group in dict.fromkeys(str(r["group"]) for r in rows):
        chosen = [r for r in rows if r["group"] == group]
        summary = {"group": group, "pages": len(chosen)}
        for mode in MODES:
            summary[mode] = {
                k: round(statistics.mean(r[mode][k] for r in chosen), 4)  # type: ignore[index]
                for k in ("cer", "bag_wer", "seconds", "cpu_seconds", "from_layer")
            }
        print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main())
