"""The two engine interfaces and their start-up helpers; nothing here imports Ray or a model."""

from __future__ import annotations

import abc
import asyncio
import fcntl
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..datatypes import ChatReply, ChatTurn, Recognition, RecognizeRequest, Region
from ..errors import ChatUnavailable


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

    # True when ``sleep`` keeps the model in this process (vLLM's sleep mode): a swapped-out model
    # is then sleeping, not unloaded.
    sleeps_in_place: bool = False

    @abc.abstractmethod
    def start(self) -> None: ...

    def check_files(self) -> None:  # noqa: B027 (most engines find their files in start)
        """Raise ``ModelLoadError`` if the model's files are missing, without loading it."""

    async def sleep(self) -> None:
        """Give the model's memory back until ``wake`` (a swap, engines/swap.py): by default the
        engine is shut down, and ``wake`` starts it again."""
        await asyncio.to_thread(self.shutdown)

    async def wake(self) -> None:
        await asyncio.to_thread(self.start)

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
