"""Request bodies: read with a size bound (chunked bodies carry no length), pydantic's validation
errors as one 400, and a request's document (multipart file, base64, URL or s3_uri) and options."""

from __future__ import annotations

import asyncio
import base64
import binascii
import uuid
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .config import AppArgs
from .errors import (
    BadRequest,
    BodyTimeout,
    InvalidBase64,
    PayloadTooLarge,
    StorageNotConfigured,
    UnsupportedMediaType,
)
from .fetch import fetch
from .pipeline import Options
from .results import ResultStore
from .text_layer import TextLayer


def request_id(request: Request) -> str:
    """Serve's proxy puts its request id into the request headers (and the response)."""
    rid = getattr(request.state, "request_id", None)
    if rid is None:
        rid = request.state.request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    return str(rid)


async def read_bounded(request: Request, ceiling: int, timeout_s: float) -> bytes:
    """Read the body once, refusing it as soon as it passes ``ceiling`` bytes or ``timeout_s``
    seconds; Starlette's ``form()`` and ``body()`` then read the cached bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > ceiling:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {ceiling}")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > ceiling:
                    raise PayloadTooLarge(f"request body passed {ceiling} bytes, the limit")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout(
            f"{size} bytes of the body arrived in {timeout_s:g} s, the limit (limits.body_timeout_s)"
        ) from None
    request._body = b"".join(chunks)  # Starlette's own cache of the body
    return request._body


def json_ceiling(limit: int) -> int:
    """The most a JSON body carrying a ``limit``-byte document in base64 can take: base64 adds a
    third, framing and options little."""
    return limit * 4 // 3 + 1024 * 1024


def bad_request(exc: ValidationError) -> BadRequest:
    problems = (f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
    return BadRequest("; ".join(problems))


class DocumentOptions(BaseModel):
    """How a document is read: the options of ``/v1/ocr`` and ``/v1/jobs``."""

    model_config = ConfigDict(extra="forbid")

    pages: str | None = Field(None, description="1-based page ranges, e.g. '1-3,5'; all if empty")
    dpi: int | None = Field(
        None, ge=36, le=1200, strict=False, description="PDF render resolution; the config default if empty"
    )
    layout: bool = Field(
        True,
        description="false: read each page as one region (always so with a recognizer that lays out pages)",
    )
    lang: str = Field("auto", description="'auto', ISO codes ('ru', 'en', 'ru+en', 'zh') or tesseract codes")
    text_layer: TextLayer = Field(
        "auto",
        description="a PDF's own text: 'auto' reads it where it can be trusted and OCRs the rest, "
        "'off' OCRs every page, 'only' never OCRs",
    )

    model: str | None = Field(
        None, description="the recognizer that reads it, by name (GET /v1/models); the default if empty"
    )

    def options(self) -> Options:
        return Options(self.pages, self.dpi, self.layout, self.lang, self.text_layer, model=self.model)


class OcrOptions(DocumentOptions):
    # Under 0.1 s no page can be read: such a deadline is a mistake, not a request.
    timeout_s: float | None = Field(
        None,
        ge=0.1,
        le=3600,
        allow_inf_nan=False,
        description="deadline in seconds; the configured default if empty",
    )
    store: bool = Field(
        False,
        description="also write the result and page images to S3 and answer with presigned URLs "
        "(needs storage configured)",
    )
    page_images: bool = Field(
        False,
        description="also answer each page's image inline (pages[].image_data, a JPEG data: URL, "
        "at most 1600 px a side), to draw the blocks over; never stored",
    )


class DocumentSource(BaseModel):
    file: str | None = Field(None, description="the document, base64-encoded")
    url: str | None = Field(None, description="or: an http(s) URL to fetch it from (no internal addresses)")
    s3_uri: str | None = Field(None, description="or: s3://bucket/key, read through the configured storage")

    @model_validator(mode="after")
    def _one_source(self) -> DocumentSource:
        if sum(v is not None for v in (self.file, self.url, self.s3_uri)) != 1:
            raise ValueError("give the document as exactly one of: file (base64), url, s3_uri")
        return self


class OcrJsonRequest(OcrOptions, DocumentSource):
    pass


class JobJsonRequest(DocumentOptions, DocumentSource):
    pass


OptionsT = TypeVar("OptionsT", bound=DocumentOptions)


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its ``$defs`` written out in place: a body declared through
    ``openapi_extra`` is copied as it is, where a reference into ``$defs`` would point nowhere."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[1]])
            return {key: inline(value) for key, value in node.items()}
        return [inline(value) for value in node] if isinstance(node, list) else node

    return inline(schema)


def json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` of a route that reads ``model`` as JSON (read by hand, bounded)."""
    content = {"application/json": {"schema": inline_schema(model)}}
    return {"requestBody": {"required": True, "content": content}}


def request_body_schema(options: type[DocumentOptions], json_body: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` of a route that reads a document as multipart or JSON."""
    fields = {"file": {"type": "string", "format": "binary"}, **options.model_json_schema()["properties"]}
    multipart = {"type": "object", "required": ["file"], "properties": fields}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": multipart},
                "application/json": {"schema": inline_schema(json_body)},
            },
        }
    }


async def read_document_request(
    request: Request,
    args: AppArgs,
    results: ResultStore | None,
    options: type[OptionsT],
    json_body: type[OptionsT],
) -> tuple[bytes, OptionsT]:
    """The document (multipart ``file``; JSON ``file``, ``url`` or ``s3_uri``) and its options."""
    limit = args.limits.max_upload_bytes
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # Refuse what cannot fit before reading it: base64 adds a third, framing and options little.
    ceiling = json_ceiling(limit) if ctype == "application/json" else limit + 1024 * 1024
    await read_bounded(request, ceiling, args.limits.body_timeout_s)
    if ctype == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=16)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise BadRequest("multipart body needs a 'file' part with the document")
        data = await upload.read()
        fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str)}
        try:
            opts = options.model_validate(fields)
        except ValidationError as exc:
            raise bad_request(exc) from None
    elif ctype == "application/json":
        body = await parse_json(await request.body(), json_body)
        assert isinstance(body, DocumentSource)
        data = await json_document(body, args, results)
        opts = body
    else:
        raise UnsupportedMediaType(
            f"send multipart/form-data with a 'file' part or application/json, not {ctype!r}"
        )
    return within_limit(data, limit), opts


def within_limit(data: bytes, limit: int) -> bytes:
    if len(data) > limit:
        raise PayloadTooLarge(f"document is {len(data)} bytes; the limit is {limit}")
    return data


ModelT = TypeVar("ModelT", bound=BaseModel)


async def parse_json(raw: bytes, model: type[ModelT]) -> ModelT:
    """``raw`` as ``model``, or one 400. A 50 MiB document is 67 MiB of JSON: parsed (and
    decoded) off the event loop."""
    try:
        return await asyncio.to_thread(model.model_validate_json, raw)
    except ValidationError as exc:
        raise bad_request(exc) from None


async def json_document(body: DocumentSource, args: AppArgs, results: ResultStore | None) -> bytes:
    limits = args.limits
    if body.url is not None:
        return await fetch(body.url, limits.max_upload_bytes, limits.url_timeout_s, limits.url_allowlist)
    if body.s3_uri is not None:
        if results is None:
            raise StorageNotConfigured(
                "s3_uri needs S3 storage, and none is configured (storage: in the config)"
            )
        return await results.storage.read_uri(body.s3_uri, limits.max_upload_bytes)
    try:
        return await asyncio.to_thread(base64.b64decode, body.file or "", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidBase64("'file' is not valid base64") from None
