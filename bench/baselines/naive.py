"""The users' earlier design, as a baseline: one uvicorn process, one FastAPI route that runs layout
and then recognition of each region, synchronously, with the same engines as the service, set up
by the same serve config (``BENCH_NAIVE_CONFIG``, default ``serve_config.cpu.yaml``).

    python -m uvicorn bench.baselines.naive:app --host 127.0.0.1 --port 9100
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from fastapi import FastAPI, UploadFile

from bench.systems import ROOT, config_args
from serve_app.crops import crop
from serve_app.datatypes import RecognizeRequest
from serve_app.documents import Document
from serve_app.engines import build_layout, build_recognizer
from serve_app.regions import arrange

args = config_args(Path(os.environ.get("BENCH_NAIVE_CONFIG", ROOT / "serve_config.cpu.yaml")))
layout, recognizer = build_layout(args.layout), build_recognizer(args.recognizer)
layout.start()
recognizer.start()
app = FastAPI()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/ocr")
def ocr(file: UploadFile) -> dict[str, object]:
    started = time.perf_counter()
    doc = Document(file.file.read(), args.limits)
    texts = []
    try:
        for index in doc.select(None):
            image = doc.render(index).image
            regions = arrange(image, asyncio.run(layout.detect([image]))[0])
            for region in regions:
                pixels, lines = crop(image, region)
                request = RecognizeRequest(pixels, region.task, lines=lines)
                texts.append(asyncio.run(recognizer.recognize([request]))[0].text)
        pages = len(doc.select(None))
    finally:
        doc.close()
    return {
        "text": "\n\n".join(texts),
        "pages": pages,
        "ms": round((time.perf_counter() - started) * 1000, 1),
    }
