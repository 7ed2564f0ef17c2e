"""One document through layout and recognition: pure async orchestration over two small clients.

The same function runs over Serve DeploymentHandles (in the ingress), over engines (in unit tests)
or over a recording fake; it knows nothing of Ray or of models.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

import numpy as np

from . import text_layer
from .crops import crops
from .datatypes import Box, Recognition, RecognizeRequest, Region, box_area
from .documents import Document, Page
from .regions import text_lines
from .text_layer import TextLayer

T = TypeVar("T")
# Called with each rendered page (1-based number, RGB image), e.g. to store its image.
PageSink = Callable[[int, np.ndarray], Awaitable[None]]


class LayoutClient(Protocol):
    async def detect(self, image: np.ndarray) -> list[Region]:
        """Regions of one page, in reading order."""
        ...


class RecognizerClient(Protocol):
    async def recognize(self, requests: Sequence[RecognizeRequest]) -> list[Recognition]:
        """All regions of a page in one call: one round trip, and the engine batches them."""
        ...


@dataclass(frozen=True)
class Options:
    pages: str | None = None
    dpi: int | None = None
    layout: bool = True
    lang: str = "auto"
    # A PDF page's own text: "auto" where it can be trusted (text_layer.py), "off" never, "only"
    # always (nothing is OCR'd).
    text_layer: TextLayer = "auto"
    # Regions of these tasks go to the recognizer even where the layer holds their text (a VLM
    # gives a table its structure); set by the service from its config.
    ocr_tasks: frozenset[str] = frozenset()
    # The recognizer that reads it, by name; None: the default (the config's first).
    model: str | None = None
    # Its Cyrillic regions read by the recognizers of ``route_by_script``: it named no model.
    routed: bool = False


@dataclass(frozen=True)
class Block:
    order: int
    label: str
    bbox: tuple[float, float, float, float]
    score: float
    text: str
    engine: str
    confidence: float
    error: str | None = None
    source: str = "ocr"  # "text_layer": read from the PDF's own text, not from pixels


@dataclass(frozen=True)
class PageResult:
    page: int  # 1-based
    width: int
    height: int
    blocks: list[Block]
    timings_ms: dict[str, float] = field(default_factory=dict)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


async def process_page(
    doc: Document,
    index: int,
    options: Options,
    layout: LayoutClient | None,
    recognizer: RecognizerClient,
    on_page: PageSink | None = None,
) -> PageResult:
    """``layout`` None: the recognizer reads whole pages and lays them out itself (dots.ocr)."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    page = await asyncio.to_thread(doc.render, index, options.text_layer != "off")
    timings["render"] = _ms(start)
    if on_page is None:
        return await _read_page(page, options, layout, recognizer, timings, start)
    sink = asyncio.ensure_future(on_page(index + 1, page.image))  # while the page is being read
    try:
        result = await _read_page(page, options, layout, recognizer, timings, start)
    except BaseException:
        sink.cancel()
        raise
    await sink
    return result


async def _read_page(
    page: Page,
    options: Options,
    layout: LayoutClient | None,
    recognizer: RecognizerClient,
    timings: dict[str, float],
    start: float,
) -> PageResult:
    image = page.image
    h, w = image.shape[:2]
    whole_page = Region(bbox=(0.0, 0.0, float(w), float(h)), label="text", score=1.0)

    regions: Sequence[Region] = [whole_page]
    if options.layout and layout is not None:
        t = time.perf_counter()
        detected = await layout.detect(image)
        timings["layout"] = _ms(t)
        regions = detected or [whole_page]

    # A region whose text the layer holds is read from it; None: it goes to the recognizer.
    from_layer: list[Recognition | None] = [None] * len(regions)
    # A VLM reading the whole page (no layout) gives it its structure, tables and formulas, that
    # one block of the layer's text would lose; "only" reads the layer whatever it holds.
    vlm_page = regions[0] is whole_page and bool(options.ocr_tasks)
    if options.text_layer == "only" or (page.chars and not vlm_page):
        t = time.perf_counter()
        from_layer = await asyncio.to_thread(_from_layer, page, regions, options)
        timings["text_layer"] = _ms(t)

    t = time.perf_counter()

    def requests() -> list[list[RecognizeRequest]]:  # pixel work (rules, cells, masks): off the loop
        if regions[0] is whole_page:
            return [[RecognizeRequest(image, "text", options.lang, True)] if from_layer[0] is None else []]
        out: list[list[RecognizeRequest]] = []
        for r, known in zip(regions, from_layer, strict=True):
            if known is not None:
                out.append([])
                continue
            cs = crops(image, r)
            task = r.task if len(cs) == 1 else "text"  # a table's cell is text
            out.append([RecognizeRequest(pixels, task, options.lang, False, lines) for pixels, lines in cs])
        return out

    per_region = await asyncio.to_thread(requests)
    asked = [q for qs in per_region for q in qs]
    flat = await recognizer.recognize(asked) if asked else []
    readings, at = [], 0
    for qs, known in zip(per_region, from_layer, strict=True):  # a table read cell by cell is one block
        if known is not None:
            readings.append(known)
        else:
            readings.append(flat[at] if len(qs) == 1 else _joined(flat[at : at + len(qs)]))
        at += len(qs)
    if asked:
        timings["recognize"] = _ms(t)
    readings = [
        replace(rec, text="") if _unread_picture(r, len(qs), rec, w * h) else rec
        for r, qs, rec in zip(regions, per_region, readings, strict=True)
    ]
    # A region read cell by cell is a table, whatever the layout model called it (a scan's "figure").
    labels = [r.label if len(qs) <= 1 else "table" for r, qs in zip(regions, per_region, strict=True)]
    # A whole-page reader's own blocks stand for its page region; other readings are one block each.
    parts = [
        (label, bbox, score, text, rec)
        for r, region_label, rec in zip(regions, labels, readings, strict=True)
        for label, bbox, score, text in (
            [(b.label, b.bbox, rec.confidence, b.text) for b in rec.blocks]
            or [(region_label, r.bbox, r.score, rec.text)]
        )
    ]
    blocks = [
        Block(
            order=i,
            label=label,
            bbox=tuple(round(v, 1) for v in bbox),  # type: ignore[arg-type]
            score=round(score, 4),
            text=text,
            engine=rec.engine,
            confidence=round(rec.confidence, 4),
            error=rec.error,
            source="text_layer" if rec.engine == LAYER_ENGINE else "ocr",
        )
        for i, (label, bbox, score, text, rec) in enumerate(parts)
    ]
    timings["total"] = _ms(start)
    return PageResult(page=page.index + 1, width=w, height=h, blocks=blocks, timings_ms=timings)


LAYER_ENGINE = "text_layer"
# A picture on a page of text (a chart, an emblem, a seal) is a picture: the words its reader
# finds on its bars, axes and rims, sparse and read unsure (tesseract 0.4-0.7, where print reads at
# 0.85 and over), are not the document's text. Kept as text: a "figure" over half the page (a form
# or a receipt the layout model did not take apart), one mostly covered by text lines (a paragraph
# or a table of contents it called a figure), and any reading as sure as print.
PICTURE_MAX_PAGE_SHARE = 0.5
PICTURE_MAX_LINE_SHARE = 0.4
PICTURE_TEXT_MIN_CONFIDENCE = 0.8


def _unread_picture(region: Region, crops: int, reading: Recognition, page_area: float) -> bool:
    lines = sum(map(box_area, region.lines))
    return (
        region.label == "figure"
        and crops == 1  # not a grid read cell by cell
        and not reading.blocks
        and reading.confidence < PICTURE_TEXT_MIN_CONFIDENCE
        and region.area < PICTURE_MAX_PAGE_SHARE * page_area
        and lines < PICTURE_MAX_LINE_SHARE * region.area
    )


def _from_layer(page: Page, regions: Sequence[Region], options: Options) -> list[Recognition | None]:
    """Each region's reading from the page's text layer, or None where it must be OCR'd.
    ``only`` reads whatever the layer shows, a scanner's invisible OCR layer included."""
    only = options.text_layer == "only"
    page_lines: list[Box] | None = None
    out: list[Recognition | None] = []
    for r, picked in zip(regions, text_layer.region_chars(page.chars, regions, invisible=only), strict=True):
        if not only and (not picked or r.task in options.ocr_tasks):
            out.append(None)
            continue
        lines: Sequence[Box] = r.lines
        if picked and not lines:  # a layout model that orders its own regions finds no lines: here
            page_lines = text_lines(page.image) if page_lines is None else page_lines
            lines = text_layer.lines_in(page_lines, r.bbox)
        text, why_not = text_layer.read(page.chars, picked, lines)
        if only:
            out.append(
                Recognition(text if lines else text_layer.text_of(page.chars, picked), 1.0, LAYER_ENGINE)
            )
        else:
            out.append(Recognition(text, 1.0, LAYER_ENGINE) if why_not is None else None)
    return out


def _joined(cells: Sequence[Recognition]) -> Recognition:
    """A table's cells' readings as the table's one reading: cell after cell, each on its lines."""
    read = [c for c in cells if c.text.strip()]
    if not read:
        return cells[0]
    weights = [len(c.text) for c in read]
    engines = Counter[str]()
    for c, n in zip(read, weights, strict=True):
        engines[c.engine] += n
    return Recognition(
        text="\n".join(c.text for c in read),
        confidence=sum(c.confidence * n for c, n in zip(read, weights, strict=True)) / sum(weights),
        engine=engines.most_common(1)[0][0],
        error=next((c.error for c in cells if c.error), None),  # a cell that failed is flagged
    )


async def process_document(
    doc: Document,
    indices: Sequence[int],
    options: Options,
    layout: LayoutClient | None,
    recognizer: RecognizerClient,
    max_concurrent_pages: int,
    on_page: PageSink | None = None,
) -> list[PageResult]:
    """Pages run concurrently (bounded); the first failure cancels the rest."""
    gate = asyncio.Semaphore(max_concurrent_pages)

    async def one(index: int) -> PageResult:
        async with gate:
            return await process_page(doc, index, options, layout, recognizer, on_page)

    return await gather_or_cancel(*(one(i) for i in indices))


async def gather_or_cancel(*aws: Awaitable[T]) -> list[T]:
    """Like ``asyncio.gather``, but the first failure (or our cancellation) cancels the others,
    so no model keeps working for a request that has already failed."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
