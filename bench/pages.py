"""Per-page CER of the serve_app pipeline (in-process, same code as the service, no Ray/HTTP)
next to bare RapidOCR and bare tesseract on the whole page.

    python -m bench.pages [EVALDATA_DIR] [--only SUBSTRING] [--half tuning|validation|russian]
                          [--out FILE.jsonl] [--config YAML] [--bare-from EARLIER.jsonl]
                          [--texts DIR]

Reads ``manifest.jsonl`` of the evaldata layout; prints one line per page, then the means of each
half of the fixed split (bench/split.py). SROIE ground truth is upper-case and is compared
case-insensitively. ``--bare-from`` takes the bare engines' figures from an earlier run's output
(they do not change with the pipeline), which halves the run. ``--texts`` writes the service's
text of each page to DIR/ID.txt, to diff against the ground truth, and its blocks (as the API's
JSON has them) to DIR/ID.blocks.json, to try other reading orders without reading again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from bench.bare import bare_rapidocr
from bench.corpus import tesseract_lang
from bench.split import HALVES, half
from bench.systems import config_args
from bench.textmetrics import cer
from serve_app.assemble import page_json, page_text
from serve_app.config import AppArgs
from serve_app.documents import Document
from serve_app.engines import build_layout, build_recognizer
from serve_app.engines.base import LayoutEngine, RecognizerEngine
from serve_app.local import LocalLayout
from serve_app.pipeline import Options, process_document

DEFAULT_DIR = Path(__file__).parents[2] / "shared" / "evaldata"
CPU_CONFIG = Path(__file__).parents[1] / "serve_config.cpu.yaml"


def started_engines(config: Path) -> tuple[AppArgs, LayoutEngine, RecognizerEngine]:
    """The serve config's args, and its layout and recognizer engines, started (in-process)."""
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    args = config_args(config)
    layout, recognizer = build_layout(args.layout), build_recognizer(args.recognizer)
    layout.start()
    recognizer.start()
    return args, layout, recognizer


def _bare(image: np.ndarray, rapid, tess_api) -> dict[str, str]:  # type: ignore[no-untyped-def]
    from PIL import Image

    result, _ = rapid(image)
    tess_api.SetImage(Image.fromarray(image))
    return {"rapidocr": "\n".join(r[1] for r in result or []), "tesseract": tess_api.GetUTF8Text()}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--only", default="")
    parser.add_argument("--half", choices=HALVES, help="only this half of the split")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--config", type=Path, default=CPU_CONFIG, help="serve config whose engines to run")
    parser.add_argument("--bare-from", type=Path, help="an earlier --out file: its bare engines' CER")
    parser.add_argument(
        "--texts", type=Path, help="write each page's text and blocks to DIR/ID.txt, ID.blocks.json"
    )
    opts = parser.parse_args()
    args, layout, recognizer = started_engines(opts.config)

    import tesserocr

    rapid = bare_rapidocr()
    tessdata = str(args.recognizer.tessdata_dir) + "/"  # type: ignore[union-attr]
    apis = {lang: tesserocr.PyTessBaseAPI(path=tessdata, lang=lang) for lang in ("eng", "rus")}
    earlier = {}
    if opts.bare_from:
        earlier = {r["id"]: r for r in map(json.loads, opts.bare_from.read_text().splitlines())}
    rows = []
    out = opts.out.open("w") if opts.out else None
    for line in (opts.dir / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if opts.only not in entry["id"] or opts.half not in (None, half(entry["source"])):
            continue
        path = opts.dir / entry["image"]
        truth = (path.parent / (path.name.rsplit(".", 1)[0] + ".gt.txt")).read_text()
        casefold = entry["source"] == "sroie"
        doc = Document(path.read_bytes(), args.limits)
        started, cpu_started = time.perf_counter(), time.process_time()
        pages = await process_document(
            doc, [0], Options(), LocalLayout(layout), recognizer, max_concurrent_pages=1
        )
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        text = page_text(pages[0])
        if opts.texts:
            (opts.texts / f"{entry['id']}.txt").parent.mkdir(parents=True, exist_ok=True)
            (opts.texts / f"{entry['id']}.txt").write_text(text)
            blocks = page_json(pages[0])["blocks"]  # as the API answers them
            (opts.texts / f"{entry['id']}.blocks.json").write_text(json.dumps(blocks, ensure_ascii=False))
        image = doc.render(0).image
        lang = tesseract_lang(entry["lang"])  # the page's language, as `tesseract -l` is run
        if entry["id"] in earlier:
            bare = {k: earlier[entry["id"]][k] for k in ("rapidocr", "tesseract")}
        else:
            bare = {k: cer(v, truth, casefold) for k, v in _bare(image, rapid, apis[lang]).items()}
        row = {
            "id": entry["id"],
            "half": half(entry["source"]),
            "service": round(cer(text, truth, casefold), 4),
            **{k: round(v, 4) for k, v in bare.items()},
            "best_bare": round(min(bare.values()), 4),
            "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu_seconds, 2),  # every thread of this process: the engines' CPU
            "engines": sorted({b.engine for b in pages[0].blocks}),
        }
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
        if out:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    for name in HALVES:
        chosen = [r for r in rows if r["half"] == name]
        if not chosen:
            continue
        means = {
            k: round(statistics.mean(r[k] for r in chosen), 4)
            for k in ("service", "rapidocr", "tesseract", "best_bare", "seconds", "cpu_seconds")
        }
        worse = [r["id"] for r in chosen if r["service"] > r["best_bare"] + 0.03]
        summary = {"half": name, "pages": len(chosen), "mean": means, "worse_than_best_bare_by_0.03": worse}
        print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main())
