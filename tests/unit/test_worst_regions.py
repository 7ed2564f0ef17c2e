from __future__ import annotations

from pathlib import Path

from PIL import Image

from bench.accuracy import Doc, save_crops, worst_regions
from tests.conftest import DATA


def block(order: int, text: str, bbox: list[float] | None = None) -> dict:
    return {"order": order, "label": "text", "bbox": bbox or [0, 0, 10, 10], "text": text,
            "engine": "rapidocr", "confidence": 0.9}  # fmt: skip


def test_blocks_whose_words_the_truth_lacks_rank_first() -> None:
    truth = "The quick brown dog jumped over the lazy fox."
    page = {
        "blocks": [block(0, "The quick brown dog"), block(1, "Tne qnick brovvn dog"), block(2, "jumped ovr")]
    }
    worst = worst_regions(page, truth, k=5)
    assert [b["order"] for b in worst] == [1, 2]  # a block read right is not among them
    assert worst[0]["word_miss"] == 0.75 and worst[1]["word_miss"] == 0.5


def test_crops_of_the_worst_regions_are_saved(tmp_path: Path) -> None:
    doc = Doc("phototest", "repo", DATA / "phototest.png", "", ("en",))
    saved = save_crops(doc, [block(3, "x", [36, 90, 600, 140])], tmp_path / "phototest")
    assert saved[0]["crop"] == "phototest/003-text.png"
    with Image.open(tmp_path / saved[0]["crop"]) as crop:
        assert crop.size == (564, 50)
