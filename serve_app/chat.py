"""``POST /v1/chat/completions``: OpenAI-compatible chat about an image, answered by the VLM recognizer.

Non-streaming. Images come as ``data:`` URLs (the service fetches nothing); one image per
conversation, decoded with the same limits as OCR uploads. The requested model must be the one
loaded, or the answer is 404: never a silent answer from another model.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from typing import Any, Literal

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .bodies import bad_request, read_bounded
from .config import AppArgs
from .documents import Document
from .engines.base import ChatTurn
from .errors import BadRequest, InvalidBase64, ModelNotFound, NotReady, UnsupportedMediaType


class ImageUrl(BaseModel):
    url: str


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageUrl | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart]


class ChatRequest(BaseModel):
    # OpenAI clients send fields we do not use (top_p, user, ...): ignore them, refuse what we cannot do.
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[Message] = Field(..., min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(None, ge=1, le=32768)
    temperature: float = Field(0.0, ge=0, le=2)
    stream: bool = False
    n: int = Field(1, ge=1, le=1)


DEFAULT_MAX_TOKENS = 1024


def served_models(models: dict[str, Any]) -> list[str]:
    """Chat model ids (the recognizer's served name) from the health view's model infos."""
    name = str(models.get("Recognizer", {}).get("name", ""))
    return [name.removeprefix("vllm:")] if name.startswith("vllm:") else []


def add_chat_routes(app: FastAPI, args: AppArgs, backend: Any) -> None:
    @app.post(
        "/v1/chat/completions",
        summary="OpenAI-compatible chat about an image (non-streaming), answered by the VLM",
    )
    async def chat_completions(request: Request) -> dict[str, Any]:
        # An image is at most max_upload_bytes, base64 adds a third; the text around it is small.
        raw = await read_bounded(request, args.limits.max_upload_bytes * 4 // 3 + 1024 * 1024)
        try:
            body = ChatRequest.model_validate_json(raw)
        except ValidationError as exc:
            raise bad_request(exc) from None
        if body.stream:
            raise BadRequest('streaming is not supported yet: send "stream": false')
        health = await backend.health()
        if health.status != "ready":
            raise NotReady(f"service is {health.status}: {health.reason}")
        available = served_models(health.models)
        if body.model not in available:
            raise ModelNotFound(
                f"model {body.model!r} is not loaded; loaded chat models: {', '.join(available) or 'none'}"
            )
        turns = [_turn(m, args) for m in body.messages]
        if sum(t.image is not None for t in turns) > 1:
            raise BadRequest("one image per conversation")
        max_tokens = body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS
        reply = await backend.chat(turns, max_tokens, body.temperature)
        return {
            "id": "chatcmpl-" + uuid.uuid4().hex,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "total_tokens": reply.prompt_tokens + reply.completion_tokens,
            },
        }


def _turn(message: Message, args: AppArgs) -> ChatTurn:
    if isinstance(message.content, str):
        return ChatTurn(message.role, message.content)
    texts, image = [], None
    for part in message.content:
        if part.type == "text":
            texts.append(part.text or "")
        elif part.image_url is not None:
            if image is not None:
                raise BadRequest("one image per conversation")
            image = _decode_image(part.image_url.url, args)
    return ChatTurn(message.role, "\n".join(texts), image)


def _decode_image(url: str, args: AppArgs):  # -> np.ndarray
    if not url.startswith("data:"):
        raise BadRequest("images must be data: URLs (data:image/png;base64,...); the service fetches nothing")
    header, _, payload = url.partition(",")
    if ";base64" not in header:
        raise BadRequest("image data URLs must be base64-encoded")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidBase64("the image data URL is not valid base64") from None
    doc = Document(data, args.limits)
    try:
        if doc.kind == "pdf":
            raise UnsupportedMediaType("chat takes an image, not a PDF (use /v1/ocr for documents)")
        doc.select("1")
        return doc.render(0).image
    finally:
        doc.close()
