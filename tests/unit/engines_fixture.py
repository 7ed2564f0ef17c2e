"""Real CPU engines started once per test session, and a Backend over them without Ray."""

from __future__ import annotations

from collections.abc import Sequence

from serve_app.backend import Health
from serve_app.datatypes import Recognition, RecognizeRequest
from serve_app.engines.base import LayoutEngine, RecognizerEngine
from serve_app.local import LocalLayout


class CountingRecognizer:
    """The engine as the pipeline's recognizer client, counting the calls that reach it."""

    def __init__(self, engine: RecognizerEngine) -> None:
        self.engine = engine
        self.calls = 0

    async def recognize(self, requests: Sequence[RecognizeRequest]) -> list[Recognition]:
        self.calls += 1
        return await self.engine.recognize(requests)


class HeldRecognizer:
    """A recognizer client held at its first call until the test lets it go."""

    def __init__(self, inner: CountingRecognizer) -> None:
        import asyncio

        self.inner, self.entered, self.go = inner, asyncio.Event(), asyncio.Event()

    async def recognize(self, requests: Sequence[RecognizeRequest]) -> list[Recognition]:
        self.entered.set()
        await self.go.wait()
        return await self.inner.recognize(requests)


class EngineBackend:
    """The API's Backend over in-process engines: what the Serve handles do, minus Ray."""

    def __init__(self, layout: LayoutEngine, recognizer: RecognizerEngine) -> None:
        self.layout = LocalLayout(layout)
        self.recognizer = CountingRecognizer(recognizer)
        self._engines = {"Layout": layout, "Recognizer": recognizer}
        self.status = "ready"

    async def health(self) -> Health:
        from dataclasses import asdict

        models = {k: asdict(e.info()) for k, e in self._engines.items()}
        reason = "" if self.status == "ready" else "models are loading"
        recognizers = {"cpu": {"deployment": "Recognizer", **models["Recognizer"]}}
        return Health(self.status, reason, {}, models, recognizers)  # type: ignore[arg-type]

    def select(self, model: str) -> EngineBackend:
        return self  # one recognizer

    async def chat(self, turns, max_tokens: int, temperature: float, model: str | None = None):  # type: ignore[no-untyped-def]
        return await self._engines["Recognizer"].chat(turns, max_tokens, temperature)  # type: ignore[attr-defined]

    def chat_stream(self, turns, max_tokens: int, temperature: float, model: str | None = None):  # type: ignore[no-untyped-def]
        return self._engines["Recognizer"].chat_stream(turns, max_tokens, temperature)

    async def check_lang(self, lang: str) -> str:
        return self._engines["Recognizer"].check_lang(lang)  # type: ignore[attr-defined]

    def wake_jobs(self) -> None:
        self.woken = getattr(self, "woken", 0) + 1
