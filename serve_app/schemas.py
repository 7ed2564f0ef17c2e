"""The shapes of the 200 answers, for the OpenAPI schema (clients are generated from it).

The routes build plain dicts (``assemble``, ``jobs.job_view``); these models describe them, and
the API tests validate real answers against them with unknown keys forbidden, so the schema
cannot drift from what is sent.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BlockOut(_Answer):
    order: int
    label: str
    bbox: list[float]
    score: float
    text: str
    engine: str
    confidence: float
    error: str | None = None
    source: Literal["text_layer", "ocr"]  # where the text came from


class PageOut(_Answer):
    page: int
    width: int
    height: int
    blocks: list[BlockOut]
    markdown: str
    text: str
    timings_ms: dict[str, float]
    image: str | None = None  # where the page image is stored, beside result.json
    image_data: str | None = None  # with page_images: the page as a data: URL (JPEG)


class DocumentOut(_Answer):
    media_type: str
    page_count: int
    pages: list[int]
    dpi: int | None


class StoredResult(_Answer):
    key: str
    json_url: str
    markdown_url: str
    page_image_urls: list[str]


class OcrResult(_Answer):
    request_id: str | None
    job_id: str | None = None
    models: dict[str, Any]
    document: DocumentOut
    pages: list[PageOut]
    markdown: str
    text: str
    timings_ms: dict[str, float]
    storage: StoredResult | None = None


class JobProgress(_Answer):
    pages_done: int
    pages_total: int


class JobDocument(_Answer):
    media_type: str
    page_count: int
    pages: list[int]


class JobLinks(_Answer):
    self: str
    result: str


class JobView(_Answer):
    id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: JobProgress
    document: JobDocument
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    expires_at: str | None
    attempts: int
    cache: Literal["hit", "miss"] | None
    result: StoredResult | None
    error: dict[str, Any] | None
    links: JobLinks


class HealthOut(_Answer):
    """With API keys set, a caller without one gets ``status`` and ``version`` only."""

    status: Literal["starting", "loading", "ready", "degraded"]
    reason: str | None = None
    deployments: dict[str, Any] | None = None
    models: dict[str, Any] | None = None
    # Each recognizer model by name: deployment, info, and in a swap group its state, last load
    # error and the swaps made.
    recognizers: dict[str, Any] | None = None
    storage: str | None = None
    version: str


class ReadyOut(_Answer):
    status: Literal["ready"]


class LiveOut(_Answer):
    status: Literal["alive"]


class ModelCard(BaseModel):
    """OpenAI's model object, with what the deployment says of its model besides."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["model"]
    owned_by: str
    deployment: str


class ModelList(_Answer):
    object: Literal["list"]
    data: list[ModelCard]


class ChatMessageOut(_Answer):
    role: Literal["assistant"]
    content: str


class ChatChoice(_Answer):
    index: int
    message: ChatMessageOut
    finish_reason: str | None


class Usage(_Answer):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(_Answer):
    """Without ``stream``; with it, the answer is OpenAI's ``text/event-stream`` of chunks."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


def ok(model: type[BaseModel], description: str = "OK", status: int = 200) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses`` entry for its answer (documented, not re-validated per request)."""
    return {status: {"model": model, "description": description}}


class Problem(BaseModel):
    """An error answer (``application/problem+json``, RFC 9457)."""

    type: str
    title: str
    status: int
    detail: str
    request_id: str | None = None


PROBLEMS = {
    400: "bad JSON, base64, page range, language or option; or no storage for store, s3_uri or jobs",
    401: "no API key, or a wrong one (when keys are configured)",
    404: "no such object (s3_uri), job or model",
    408: "the request body did not arrive within limits.body_timeout_s",
    409: "the job is not in a state for this",
    413: "document, page count, page pixels or a PDF's inflated streams over the limit",
    415: "unsupported document type",
    422: "corrupt image or PDF, or a URL that could not be fetched",
    429: "this API key's documents at once or pages a minute (see Retry-After)",
    431: "request headers over limits.max_header_bytes",
    500: "an unexpected failure (its cause is in the server log under the request id)",
    503: "models not loaded yet, overloaded or storage unreachable (see Retry-After)",
    504: "deadline exceeded (the pending work was cancelled)",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses`` entries for the problems it may answer."""
    content = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {code: {"model": Problem, "description": PROBLEMS[code], "content": content} for code in codes}
