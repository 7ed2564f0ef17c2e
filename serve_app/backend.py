"""What the HTTP routes need from the world behind them: the two model clients, health, chat and
the job runners' wake-up. Serve handles provide it in production (``serve_backend.ServeBackend``),
in-process engines in tests. Its own module, so that every route module can name it."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .datatypes import ChatReply, ChatTurn
from .pipeline import LayoutClient, RecognizerClient

Status = Literal["starting", "loading", "ready", "degraded"]
# Serve's statuses of a deployment that will not come up by itself.
FAILED = ("DEPLOY_FAILED", "UNHEALTHY")


@dataclass(frozen=True)
class Health:
    status: Status
    reason: str = ""
    deployments: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    # Each loaded recognizer model by its name: its info, deployment and (in a swap group) state.
    recognizers: dict[str, Any] = field(default_factory=dict)


class Engines(Protocol):
    """What reading a document needs of the models (``service.DocumentService``, the job runners)."""

    @property
    def layout(self) -> LayoutClient | None:
        """None when the recognizer lays out whole pages itself."""
        ...

    @property
    def recognizer(self) -> RecognizerClient: ...

    async def health(self) -> Health: ...

    async def check_lang(self, lang: str) -> str: ...

    def select(self, model: str) -> Engines:
        """The engines as the recognizer model ``model`` reads with them."""
        ...


class Backend(Engines, Protocol):
    """What the API needs from the world behind it: the engines, chat, and the job runners."""

    async def chat(
        self, turns: Sequence[ChatTurn], max_tokens: int, temperature: float, model: str | None = ...
    ) -> ChatReply:
        """Answered by the recognizer model ``model`` (the default one unless given)."""
        ...

    def chat_stream(
        self, turns: Sequence[ChatTurn], max_tokens: int, temperature: float, model: str | None = ...
    ) -> AsyncGenerator[ChatReply, None]: ...

    def wake_jobs(self) -> None:
        """Tell a job runner that a job was queued (it also looks by itself every few seconds)."""
        ...
