"""Types shared by all engines and the two engine interfaces; nothing here imports Ray or a model."""

from __future__ import annotations

import abc
import fcntl
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ChatUnavailable

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


class ModelLoadError(RuntimeError):
    """A model file is missing or unreadable; raised at start-up, never at request time."""


@contextmanager
def one_start_at_a_time(lock_dir: Path | None = None) -> Iterator[None]:
    """Engines on one machine start one after another: vLLM sizes its KV cache from the GPU memory
    that is free when it starts, so two engines starting together would both count the same bytes."""
    path = (lock_dir or Path(tempfile.gettempdir())) / "serve_app-engine-start.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ModelLoadError(f"{what} model not found at {path} (no download is attempted)")
    return path


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in page pixels


@dataclass(frozen=True)
class Region:
    bbox: Box
    label: str
    score: float
    # The text lines found in this region (see regions.py); empty when unknown. A crop keeps
    # only these lines' ink, so a line another region owns is never read twice.
    lines: tuple[Box, ...] = ()

    @property
    def task(self) -> Task:
        return TASK_BY_LABEL.get(self.label, "text")

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.bbox
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


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


@dataclass(frozen=True)
class ModelInfo:
    role: Literal["layout", "recognizer"]
    name: str
    detail: dict[str, Any] = field(default_factory=dict)


class LayoutEngine(abc.ABC):
    """Page images -> regions. ``__init__`` is cheap; ``start`` loads the model."""

    # True when the model itself returns tight boxes in reading order (PP-DocLayoutV2's pointer
    # head); False when regions must be rebuilt from the page's lines and ordered (regions.py).
    ordered: bool = False

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def check_health(self) -> None:
        """Raise while the model is not loaded or is broken."""

    @abc.abstractmethod
    async def detect(self, images: Sequence[np.ndarray]) -> list[list[Region]]: ...

    @abc.abstractmethod
    def info(self) -> ModelInfo: ...

    def shutdown(self) -> None:
        return None


class RecognizerEngine(abc.ABC):
    """Region crops + task -> text. Batched: one call may carry crops of many pages and requests."""

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def check_health(self) -> None: ...

    @abc.abstractmethod
    def check_lang(self, lang: str) -> str:
        """Normalise a requested language or raise ``UnsupportedLanguage``."""

    @abc.abstractmethod
    async def recognize(self, requests: Sequence[RecognizeRequest]) -> list[Recognition]: ...

    async def chat_stream(
        self, turns: Sequence[ChatTurn], max_tokens: int, temperature: float
    ) -> AsyncIterator[ChatReply]:
        """A free conversation about one image, as pieces of the answer; only VLM engines can."""
        raise ChatUnavailable(f"the recognizer {self.info().name!r} is not a chat model")
        yield  # an async generator, like the engines that can

    async def chat(self, turns: Sequence[ChatTurn], max_tokens: int, temperature: float) -> ChatReply:
        """The whole answer: the stream's pieces joined."""
        text, last = "", None
        async for piece in self.chat_stream(turns, max_tokens, temperature):
            text, last = text + piece.text, piece
        assert last is not None, "a chat stream ends with a piece that carries its finish reason"
        return ChatReply(text, last.finish_reason, last.prompt_tokens, last.completion_tokens)

    @abc.abstractmethod
    def info(self) -> ModelInfo: ...

    def shutdown(self) -> None:
        return None
