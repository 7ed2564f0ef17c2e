"""The pipeline over a recognizer that lays out whole pages itself (dots.ocr's shape of answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from serve_app.assemble import page_markdown
from serve_app.config import LimitsArgs
from serve_app.datatypes import ReadBlock, Recognition, RecognizeRequest
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
