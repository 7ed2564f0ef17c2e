"""One document through layout and recognition: pure async orchestration over two small clients.

The same function runs over Serve DeploymentHandles (in the ingress), over engines (in unit tests)
or over a recording fake; it knows nothing of Ray or of models.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np

from .documents import Document
from .engines.base import Box, Recognition, RecognizeRequest, Region

T = TypeVar("T")
# Called with each rendered page (1-based number, RGB image), e.g. to store its image.
PageSink = Callable[[int, np.ndarray], Awaitable[None]]

CROP_MARGIN_PX = 4  # grow each region a little: layout boxes often clip descenders
CROP_BORDER_PX = 10  # white border: tesseract reads text touching the edge badly
DARK_FIELD = 110  # grey under this is dark; a region ringed by it, and this dark in part ...
DARK_SHARE = 0.3  # ... holds light text on a dark field (a frame round a paragraph is thinner)
# In a table, a straight stroke longer than this many of its line heights is a ruling line (the
# grid, an underline), not a letter: no letter is taller than its line.
RULE_TALL = 1.3
RULE_WIDE = 4.0
RULE_LEFT = 1.5  # ... and where strokes this long are left beside them, the rules came in pieces
RULE_LEFT_SHARE = 0.05
INK = 160  # grey under this is ink


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


@dataclass(frozen=True)
class PageResult:
    page: int  # 1-based
    width: int
    height: int
    blocks: list[Block]
    timings_ms: dict[str, float] = field(default_factory=dict)


def crop(image: np.ndarray, region: Region) -> tuple[np.ndarray, tuple[Box, ...]]:
    """The region's pixels on a white border (where its lines are known, only their ink), and
    those lines in the crop's pixels.

    Light text on a dark field (a banner, a coloured badge: the region is ringed by dark) comes
    back whole, inverted to dark text on white, with no lines (the reader finds them itself)."""
    h, w = image.shape[:2]
    m = CROP_MARGIN_PX
    x0, y0 = max(0, int(region.bbox[0]) - m), max(0, int(region.bbox[1]) - m)
    x1, y1 = min(w, int(np.ceil(region.bbox[2])) + m), min(h, int(np.ceil(region.bbox[3])) + m)
    inverted = _light_on_dark(image[y0:y1, x0:x1], m)
    if inverted is not None:
        out = np.repeat(inverted[:, :, None], 3, axis=2)
        return np.pad(out, ((CROP_BORDER_PX,) * 2, (CROP_BORDER_PX,) * 2, (0, 0)), constant_values=255), ()
    if region.lines:
        raw = image[y0:y1, x0:x1]
        if region.label == "table":  # a chart's text sits on its grid and bars: left as it is
            raw = _without_rules(raw, float(np.median([b[3] - b[1] for b in region.lines])))
        out = np.full((y1 - y0, x1 - x0, 3), 255, dtype=np.uint8)
        for lx0, ly0, lx1, ly1 in region.lines:
            a, b = max(y0, int(ly0) - m), min(y1, int(np.ceil(ly1)) + m)
            c, d = max(x0, int(lx0) - m), min(x1, int(np.ceil(lx1)) + m)
            out[a - y0 : b - y0, c - x0 : d - x0] = raw[a - y0 : b - y0, c - x0 : d - x0]
    else:
        out = image[y0:y1, x0:x1]
    border = CROP_BORDER_PX
    shift_x, shift_y = x0 - border, y0 - border
    lines = tuple(
        (lx0 - shift_x, ly0 - shift_y, lx1 - shift_x, ly1 - shift_y) for lx0, ly0, lx1, ly1 in region.lines
    )
    return np.pad(out, ((border, border), (border, border), (0, 0)), constant_values=255), lines


def _without_rules(rgb: np.ndarray, line_h: float) -> np.ndarray:
    """The crop with its ruling lines painted white: inside a line's box a table's grid reads as
    "|" between the words and an underline eats the descenders."""
    import cv2

    if rgb.size == 0 or line_h < 4:
        return rgb
    ink = (cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY) < INK).astype(np.uint8)
    tall = cv2.getStructuringElement(cv2.MORPH_RECT, (1, max(3, round(RULE_TALL * line_h))))
    wide = cv2.getStructuringElement(cv2.MORPH_RECT, (max(3, round(RULE_WIDE * line_h)), 1))
    rules = np.maximum(
        cv2.morphologyEx(ink, cv2.MORPH_OPEN, tall), cv2.morphologyEx(ink, cv2.MORPH_OPEN, wide)
    )
    if not rules.any():
        return rgb
    rules = cv2.dilate(rules, np.ones((3, 3), np.uint8))
    # A skewed or broken rule (a scan) is caught in pieces: what is left reads as "_" and "E"
    # between the words, worse than the whole rule. Then the crop is read as it is.
    left = np.where(rules > 0, 0, ink).astype(np.uint8)
    short = cv2.getStructuringElement(cv2.MORPH_RECT, (max(3, round(RULE_LEFT * line_h)), 1))
    if cv2.morphologyEx(left, cv2.MORPH_OPEN, short).sum() > RULE_LEFT_SHARE * rules.sum():
        return rgb
    out = rgb.copy()
    out[rules > 0] = 255
    return out


def _light_on_dark(rgb: np.ndarray, ring_px: int) -> np.ndarray | None:
    """If the region is ringed by dark (its outer ``ring_px``) and dark in good part, its text is
    light: the region in grey, inverted, with the field stretched to white. Else None."""
    import cv2

    if rgb.size == 0:
        return None
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    m = ring_px
    ring = np.concatenate([gray[:m].ravel(), gray[-m:].ravel(), gray[:, :m].ravel(), gray[:, -m:].ravel()])
    if np.median(ring) >= DARK_FIELD or (gray < DARK_FIELD).mean() <= DARK_SHARE:
        return None
    field = 255.0 - float(np.median(ring))
    return np.clip((255.0 - gray) * (255.0 / max(1.0, field)), 0, 255).astype(np.uint8)


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
    page = await asyncio.to_thread(doc.render, index)
    timings["render"] = _ms(start)
    if on_page is None:
        return await _read_page(page.image, index, options, layout, recognizer, timings, start)
    sink = asyncio.ensure_future(on_page(index + 1, page.image))  # while the page is being read
    try:
        result = await _read_page(page.image, index, options, layout, recognizer, timings, start)
    except BaseException:
        sink.cancel()
        raise
    await sink
    return result


async def _read_page(
    image: np.ndarray,
    index: int,
    options: Options,
    layout: LayoutClient | None,
    recognizer: RecognizerClient,
    timings: dict[str, float],
    start: float,
) -> PageResult:
    h, w = image.shape[:2]
    whole_page = Region(bbox=(0.0, 0.0, float(w), float(h)), label="text", score=1.0)

    regions: Sequence[Region] = [whole_page]
    if options.layout and layout is not None:
        t = time.perf_counter()
        detected = await layout.detect(image)
        timings["layout"] = _ms(t)
        regions = detected or [whole_page]

    t = time.perf_counter()

    def requests() -> list[RecognizeRequest]:  # pixel work (ruling lines, masks): off the event loop
        out = []
        for r in regions:
            pixels, lines = (image, ()) if r is whole_page else crop(image, r)
            out.append(RecognizeRequest(pixels, r.task, options.lang, r is whole_page, lines))
        return out

    readings = await recognizer.recognize(await asyncio.to_thread(requests))
    timings["recognize"] = _ms(t)
    # A whole-page reader's own blocks stand for its page region; other readings are one block each.
    parts = [
        (label, bbox, score, text, rec)
        for r, rec in zip(regions, readings, strict=True)
        for label, bbox, score, text in (
            [(b.label, b.bbox, rec.confidence, b.text) for b in rec.blocks]
            or [(r.label, r.bbox, r.score, rec.text)]
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
        )
        for i, (label, bbox, score, text, rec) in enumerate(parts)
    ]
    timings["total"] = _ms(start)
    return PageResult(page=index + 1, width=w, height=h, blocks=blocks, timings_ms=timings)


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
