from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from bench.corpus import load, tesseract_lang


def test_pages_carry_their_manifest_language_and_tesseract_reads_each_in_its_own(tmp_path: Path) -> None:
    (tmp_path / "ru").mkdir()
    for name in ("ru/order_p1.png", "paper_p1.png", "unlisted.png"):
        Image.new("RGB", (8, 8), "white").save(tmp_path / name)
    entries = [{"id": "ru/order_p1", "image": "ru/order_p1.png", "lang": ["ru"]},
               {"id": "paper_p1", "image": "paper_p1.png", "lang": ["en"]}]  # fmt: skip
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(e) for e in entries))
    pages = {page.name: page for page in load(tmp_path)}
    assert [tesseract_lang(pages[n].lang) for n in ("ru/order_p1.png", "paper_p1.png", "unlisted.png")] == [
        "rus",
        "eng",
        "eng",
    ]
    assert pages["ru/order_p1.png"].lang == ("ru",) and pages["unlisted.png"].lang == ()
