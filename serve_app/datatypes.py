"""The vocabulary that the API, the pipeline and the engines share: regions, what to read of
them, what came back, chat turns. Plain data, importing nothing of the package, so that any layer
can name it without depending on another (httpx's ``_types.py``, Ray Serve LLM's protocol module)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

# What to ask of a region. "figure": a picture; CPU readers read any text in it, a VLM skips it
# unless configured to read it (as PaddleOCR-VL does).
Task = Literal["text", "table", "formula", "chart", "figure"]

# Our block labels (the CDLA set; other layout models map onto it).
LABELS = (
    "text",
    "title",
    "figure",
    "figure_caption",
    "table",
    "table_caption",
    "header",
    "footer",
    "reference",
    "equation",
    "chart",
)
TASK_BY_LABEL: dict[str, Task] = {
    "table": "table", "equation": "formula", "chart": "chart", "figure": "figure",
}  # fmt: skip


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in page pixels


def box_area(b: Box) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


@dataclass(frozen=True)
class Region:
    bbox: Box
    label: str
    score: float
    # The text lines found in this region (see regions.py); empty when unknown. A crop keeps
    # only these lines' ink, so a line another region owns is never read twice.
    lines: tuple[Box, ...] = ()
    # Its outline where the layout model gives one (PP-DocLayoutV3's instance masks): the crop
    # keeps only the ink inside it (an L-shaped paragraph round a picture). Empty: the box.
    polygon: tuple[tuple[float, float], ...] = ()

    @property
    def task(self) -> Task:
        return TASK_BY_LABEL.get(self.label, "text")

    @property
    def area(self) -> float:
        return box_area(self.bbox)


@dataclass(frozen=True)
class RecognizeRequest:
    image: np.ndarray  # H x W x 3 uint8 RGB crop
    task: Task = "text"
    lang: str = "auto"
    whole_page: bool = False  # no layout: the crop is a page with its own columns
    # The crop's text lines (x0, y0, x1, y1 in the crop's pixels) where the pipeline found them: a
    # reader may read these line by line instead of finding the lines again.
    lines: tuple[Box, ...] = ()


@dataclass(frozen=True)
class ReadBlock:
    """One block of a reader that lays out a whole page itself (dots.ocr)."""

    bbox: Box  # in the pixels of the image it was given
    label: str
    text: str


@dataclass(frozen=True)
class Recognition:
    text: str
    confidence: float  # 0..1, the reader's own score
    engine: str  # which reader produced the text, e.g. "tesseract:eng", "rapidocr"
    error: str | None = None
    # A whole-page reader's own blocks, in reading order; empty for readers of single regions.
    blocks: tuple[ReadBlock, ...] = ()
    tokens: int = 0  # what a generative reader wrote, over all its tries (0: not one)


@dataclass(frozen=True)
class ChatTurn:
    role: Literal["system", "user", "assistant"]
    text: str
    image: np.ndarray | None = None


@dataclass(frozen=True)
class ChatReply:
    """A whole answer, or (streaming) the text added since the last piece, with the counts so far."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
