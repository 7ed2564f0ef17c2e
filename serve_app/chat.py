"""``POST /v1/chat/completions``: OpenAI-compatible chat about an image, answered by the VLM recognizer.

Streaming (``"stream": true``, server-sent events as OpenAI sends them) or not. Images come as
``data:`` URLs (the service fetches nothing); one image per conversation, decoded with the same
limits as OCR uploads. The requested model must be a loaded one (a VLM recognizer's served name),
and its own deployment answers; any other is a 404: never a silent answer from another model. A
stream starts only once the model has produced its first piece, so a failure before that is a plain
problem+json answer; a client that goes away aborts generation.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .auth import Gate
from .backend import Backend
from .bodies import bad_request, json_ceiling, json_request_body, read_bounded
from .config import AppArgs
from .datatypes import ChatReply, ChatTurn
from .documents import Document
from .errors import (
    BadRequest,
    InvalidBase64,
    ModelNotFound,
    NotReady,
    ServeAppError,
    UnsupportedMediaType,
)
from .schemas import ChatCompletion, problems


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


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatRequest(BaseModel):
    # OpenAI clients send fields we do not use (top_p, user, ...): ignore them, refuse what we cannot do.
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[Message] = Field(..., min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(None, ge=1, le=32768)
    temperature: float = Field(0.0, ge=0, le=2)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1)


DEFAULT_MAX_TOKENS = 1024


def served_models(models: dict[str, Any]) -> list[str]:
    """Chat model ids (the recognizers' served names) from the health view's recognizer infos."""
    names = [str(info.get("name", "")) for info in models.values() if info.get("role") == "recognizer"]
    return [name.removeprefix("vllm:") for name in names if name.startswith("vllm:")]


def add_chat_routes(app: FastAPI, args: AppArgs, backend: Backend, gate: Gate) -> None:
    @app.post(
        "/v1/chat/completions",
        summary="OpenAI-compatible chat about an image (streaming or not), answered by the VLM",
        openapi_extra=json_request_body(ChatRequest),
        response_model=None,
        responses={
            200: {
                "model": ChatCompletion,
                "description": "the answer, or with stream: true OpenAI's server-sent chunks",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **problems(400, 401, 404, 408, 413, 429, 503),
        },
    )
    async def chat_completions(request: Request) -> dict[str, Any] | StreamingResponse:
        gate.take(request.state.caller, 1)  # a conversation costs a page
        # An image is at most max_upload_bytes, base64 adds a third; the text around it is small.
        ceiling = json_ceiling(args.limits.max_upload_bytes)
        raw = await read_bounded(request, ceiling, args.limits.body_timeout_s)
        try:
            body = ChatRequest.model_validate_json(raw)
        except ValidationError as exc:
            raise bad_request(exc) from None
        health = await backend.health()
        if health.status != "ready":
            raise NotReady(f"service is {health.status}: {health.reason}")
        available = served_models(health.recognizers)
        if body.model not in available:
            raise ModelNotFound(
                f"model {body.model!r} is not loaded; loaded chat models: {', '.join(available) or 'none'}"
            )
        # Images are decoded in a thread: a PDF sent as one would open under PDFium's process-wide lock.
        turns = await asyncio.to_thread(lambda: [_turn(m, args) for m in body.messages])
        if sum(t.image is not None for t in turns) > 1:
            raise BadRequest("one image per conversation")
        max_tokens = body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS
        head = {"id": "chatcmpl-" + uuid.uuid4().hex, "created": int(time.time()), "model": body.model}
        if body.stream:
            pieces = backend.chat_stream(turns, max_tokens, body.temperature, body.model)
            first = await anext(pieces)  # errors before any output are still plain problem+json
            usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(_events(head, first, pieces, usage), media_type="text/event-stream")
        reply = await backend.chat(turns, max_tokens, body.temperature, body.model)
        return {
            **head,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": _usage(reply),
        }


def _usage(reply: ChatReply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


async def _events(
    head: dict[str, Any], first: ChatReply, rest: AsyncGenerator[ChatReply, None], usage: bool
) -> AsyncIterator[str]:
    """OpenAI's chunk stream: the role first, then text pieces, the finish reason, [DONE]."""

    def event(choices: list[dict[str, Any]], **extra: Any) -> str:
        return _sse({**head, "object": "chat.completion.chunk", "choices": choices, **extra})

    last = first
    yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    try:
        piece: ChatReply | None = first
        while piece is not None:
            last = piece
            if piece.text:
                yield event([{"index": 0, "delta": {"content": piece.text}, "finish_reason": None}])
            piece = await anext(rest, None)
    except ServeAppError as exc:  # the status line is sent: say it in the stream, as OpenAI does
        yield _sse({"error": {"message": exc.detail, "type": exc.type, "code": exc.status}})
        return
    finally:
        await rest.aclose()  # the client went away or we are done: vLLM aborts what is left
    yield event([{"index": 0, "delta": {}, "finish_reason": last.finish_reason}])
    if usage:
        yield event([], usage=_usage(last))
    yield "data: [DONE]\n\n"


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


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
