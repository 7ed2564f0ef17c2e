"""The pipeline over a recognizer that lays out whole pages itself (dots.ocr's shape of answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from serve_app.assemble import page_markdown
from serve_app.config import LimitsArgs
from serve_app.datatypes import ReadBlock, Recognition, RecognizeRequest, Region
from serve_app.documents import Document
from serve_app.pipeline import Options, process_page
from tests.conftest import DATA


class PageReader:
    """Answers every page with blocks, as VllmRecognizer does for a page-reading profile."""

    def __init__(self) -> None:
        self.requests: list[RecognizeRequest] = []

    async def recognize(self, requests: Sequence[RecognizeRequest]) -> list[Recognition]:
        (request,) = requests  # a whole page: one request
        self.requests.append(request)
        h, w = request.image.shape[:2]
        blocks = (
            ReadBlock((10.0, 10.0, w - 10.0, 60.0), "title", "Heading"),
            ReadBlock((10.0, 80.0, w / 2, 300.0), "figure", ""),
            ReadBlock((10.0, 320.0, w - 10.0, 400.0), "text", "Body text."),
            ReadBlock((10.0, h - 40.0, 60.0, h - 10.0), "footer", "7"),
        )
        return [Recognition("Heading\n\nBody text.\n\n7", 1.0, "vllm:dots", None, blocks)]


def test_without_a_layout_client_the_page_is_read_whole_and_its_blocks_kept() -> None:
    doc = Document((DATA / "phototest.png").read_bytes(), LimitsArgs())
    reader = PageReader()
    page = asyncio.run(process_page(doc, 0, Options(layout=True), None, reader))
    assert len(reader.requests) == 1 and reader.requests[0].whole_page
    assert [b.label for b in page.blocks] == ["title", "figure", "text", "footer"]
    assert [b.order for b in page.blocks] == [0, 1, 2, 3]
    assert page.blocks[2].bbox == (10.0, 320.0, page.width - 10.0, 400.0)
    assert all(b.engine == "vllm:dots" for b in page.blocks)
    assert "layout" not in page.timings_ms
    assert page_markdown(page) == "## Heading\n\n![figure 1.1](#page-1-block-1)\n\nBody text."


class FixedLayout:
    def __init__(self, regions: list[Region]) -> None:
        self.regions = regions

    async def detect(self, image):  # type: ignore[no-untyped-def]
        return self.regions


class SureAs:
    """Reads region i as "text i" at the i-th confidence."""

    def __init__(self, confidences: list[float]) -> None:
        self.confidences = confidences

    async def recognize(self, requests: Sequence[RecognizeRequest]) -> list[Recognition]:
        return [Recognition(f"text {i}", c, "tesseract:rus+eng") for i, c in enumerate(self.confidences)]


def test_a_small_picture_read_unsure_is_a_picture_and_text_the_layout_called_a_figure_is_kept() -> None:
    doc = Document((DATA / "phototest.png").read_bytes(), LimitsArgs())  # 640 x 480
    chart = Region((20, 20, 220, 180), "figure", 0.9, lines=((40, 40, 120, 60), (40, 150, 200, 170)))
    dense = Region((240, 20, 440, 100), "figure", 0.9, lines=((240, 20, 440, 55), (240, 60, 440, 95)))
    page_wide = Region((0, 0, 640, 400), "figure", 0.9)
    paragraph = Region((20, 400, 620, 470), "text", 0.9)
    regions = [chart, chart, dense, page_wide, paragraph]
    confidences = [0.62, 0.9, 0.62, 0.62, 0.62]
    page = asyncio.run(process_page(doc, 0, Options(), FixedLayout(regions), SureAs(confidences)))
    # The chart's words read unsure are left out; read as surely as print, a figure's text stays,
    # as does the text of a figure mostly of text lines, of one over half the page, of a paragraph.
    assert [b.text for b in page.blocks] == ["", "text 1", "text 2", "text 3", "text 4"]
    assert page.blocks[0].label == "figure" and page.blocks[0].confidence == 0.62
