"""The HTTP API (FastAPI): routes and validation only. Models and Ray live behind ``Backend``."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .backend import Backend
from .bodies import OcrJsonRequest, OcrOptions, read_document_request, request_body_schema, request_id
from .chat import add_chat_routes, served_models
from .config import AppArgs
from .errors import (
    BadRequest,
    DeadlineExceeded,
    NotReady,
    Overloaded,
    ServeAppError,
    ServiceUnavailable,
    StorageNotConfigured,
)
from .job_routes import add_job_routes
from .results import ResultStore
from .schemas import HealthOut, ModelList, OcrResult, ReadyOut, ok
from .service import DocumentService
from .storage import Storage

logger = logging.getLogger("ray.serve.serve_app.api")


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    request_id: str | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": text}
    for code, text in [
        (400, "bad base64, page range or option"),
        (404, "no such object (s3_uri) or job"),
        (409, "the job is not in a state for this"),
        (413, "document, page count or page pixels over the limit"),
        (415, "unsupported document type"),
        (422, "corrupt image or PDF"),
        (503, "models not loaded yet or overloaded (see Retry-After)"),
        (504, "deadline exceeded"),
    ]
}

OCR_REQUEST_BODY = request_body_schema(OcrOptions, OcrJsonRequest)


def problem_response(exc: ServeAppError, request_id: str | None) -> JSONResponse:
    headers = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(math.ceil(exc.retry_after_s))
    return JSONResponse(
        exc.problem(request_id),
        status_code=exc.status,
        headers=headers,
        media_type="application/problem+json",
    )


def create_api(args: AppArgs, backend: Backend) -> FastAPI:
    results = ResultStore(Storage(args.storage)) if args.storage is not None else None
    service = DocumentService(args, backend, results)
    in_flight = 0
    app = FastAPI(
        title="serve_app",
        version=__version__,
        description="Document OCR on Ray Serve: layout + recognizer behind one HTTP API.",
    )

    @app.exception_handler(ServeAppError)
    async def on_app_error(request: Request, exc: ServeAppError) -> JSONResponse:
        if exc.status >= 500 and not isinstance(exc, ServiceUnavailable | DeadlineExceeded):
            logger.error("request failed: %s", exc.detail, exc_info=exc)
        else:
            logger.warning("%s: %s", exc.title, exc.detail)
        return problem_response(exc, request_id(request))

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(BadRequest(str(exc.errors())), request_id(request))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = ServeAppError(str(exc.detail))
        err.status, err.title = exc.status_code, str(exc.detail)
        err.type = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem_response(err, request_id(request))

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error", exc_info=exc)
        return problem_response(
            ServeAppError("internal error; see the server log for this request id"),
            request_id(request),
        )

    @app.get("/", include_in_schema=False)
    async def root(request: Request) -> RedirectResponse:
        return RedirectResponse(request.scope.get("root_path", "") + "/docs")

    @app.get(
        "/health",
        summary="Liveness with detail; 200 while the ingress answers",
        response_model=None,
        responses=ok(HealthOut),
    )
    async def health() -> dict[str, Any]:
        h = await backend.health()
        return {
            "status": h.status,
            "reason": h.reason,
            "deployments": h.deployments,
            "models": h.models,
            "storage": await results.storage.status() if results is not None else "disabled",
            "version": __version__,
        }

    @app.get(
        "/ready",
        summary="200 only when every deployment has a replica with loaded models",
        response_model=None,
        responses={**ok(ReadyOut), 503: ERROR_RESPONSES[503]},
    )
    async def ready() -> dict[str, Any]:
        h = await backend.health()
        if h.status != "ready":
            raise NotReady(f"service is {h.status}: {h.reason}")
        return {"status": "ready"}

    @app.get(
        "/v1/models",
        summary="The models loaded in each deployment (OpenAI-compatible list)",
        response_model=None,
        responses=ok(ModelList),
    )
    async def models() -> dict[str, Any]:
        h = await backend.health()
        chat = served_models(h.models)
        data = [
            {"id": chat[0] if chat and deployment == "Recognizer" else str(info.get("name")),
             "object": "model", "owned_by": "serve_app", "deployment": deployment, **info}
            for deployment, info in h.models.items()
        ]  # fmt: skip
        return {"object": "list", "data": data}

    add_chat_routes(app, args, backend)
    add_job_routes(app, args, backend, service, ERROR_RESPONSES)

    @app.post(
        "/v1/ocr",
        summary="OCR a document (multipart 'file' or JSON with base64 'file', 'url' or 's3_uri')",
        openapi_extra=OCR_REQUEST_BODY,
        response_model=None,
        responses={
            **ok(OcrResult, "the document read"),
            **{k: v for k, v in ERROR_RESPONSES.items() if k != 409},
        },
    )
    async def ocr(request: Request, response: Response) -> dict[str, Any]:
        nonlocal in_flight
        if in_flight >= args.ingress.max_documents:
            raise Overloaded(
                f"{in_flight} documents are being read on this replica, its limit; retry shortly",
                retry_after_s=args.ingress.deployment.retry_after_s,
            )
        in_flight += 1
        try:
            return await _ocr_request(request, response)
        finally:
            in_flight -= 1

    async def _ocr_request(request: Request, response: Response) -> dict[str, Any]:
        data, opts = await read_document_request(request, args, results, OcrOptions, OcrJsonRequest)
        if opts.store and results is None:
            raise StorageNotConfigured(
                "store: true needs S3 storage, and none is configured (storage: in the config)"
            )
        # The x-request-timeout-seconds header is Serve's own: its proxy answers 408 and
        # cancels the request. The body's timeout_s and the configured default land here.
        timeout_s = opts.timeout_s or args.ingress.request_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                body, cache = await service.read(data, opts.options(), opts.store, request_id(request))
        except TimeoutError:
            raise DeadlineExceeded(
                f"not done within {timeout_s:g} s; pending work was cancelled "
                "(raise timeout_s, send fewer pages, or use an async job)"
            ) from None
        if cache is not None:
            response.headers["x-cache"] = cache
        return body

    return app
