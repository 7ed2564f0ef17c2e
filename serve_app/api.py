"""The HTTP API (FastAPI): routes and validation only. Models and Ray live behind ``Backend``."""

from __future__ import annotations

import asyncio
import html
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import APIKeyHeader, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from . import __version__, paddlex
from .auth import OPEN_ROUTES, PROBE, Gate
from .backend import FAILED, Backend, Health
from .bodies import (
    OcrJsonRequest,
    OcrOptions,
    json_ceiling,
    json_document,
    json_request_body,
    parse_json,
    read_bounded,
    read_document_request,
    request_body_schema,
    request_id,
    within_limit,
)
from .chat import add_chat_routes
from .config import AppArgs
from .documents import MEDIA_TYPES, sniff
from .errors import (
    BadRequest,
    DeadlineExceeded,
    HeadersTooLarge,
    NotReady,
    Overloaded,
    ServeAppError,
    ServiceUnavailable,
    StorageNotConfigured,
    Unauthorized,
    UnsupportedMediaType,
)
from .job_routes import add_job_routes
from .metrics import Meter
from .pipeline import Options
from .results import ResultStore
from .schemas import HealthOut, LiveOut, ModelList, OcrResult, ReadyOut, ok, problems
from .service import Cache, DocumentService
from .storage import Storage

logger = logging.getLogger("ray.serve.serve_app.api")


OCR_REQUEST_BODY = request_body_schema(OcrOptions, OcrJsonRequest)
UI = Path(__file__).parent / "ui"  # the web page at /: plain HTML, CSS and JS, nothing fetched from elsewhere
# The page runs only its own script and style, talks only to this service, shows images from here,
# from data: URLs and from S3's presigned URLs, and is framed by no one.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob: http: https:; "
    "connect-src 'self' blob:; "
    "object-src 'none'; base-uri 'self'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def problem_response(
    exc: ServeAppError, request_id: str | None, route: str | None = None, log_id: str | None = None
) -> JSONResponse:
    """``exc`` as problem+json; on the PaddleX route, with PaddleX's error fields besides."""
    body = exc.problem(request_id)
    if route == paddlex.ENDPOINT:
        body.update(paddlex.error_fields(log_id or request_id or "", exc.status, exc.detail))
    headers = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(math.ceil(exc.retry_after_s))
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="serve_app"'
    return JSONResponse(
        body,
        status_code=exc.status,
        headers=headers,
        media_type="application/problem+json",
    )


def _route(request: Request) -> str | None:
    """The path of the route that took the request (as declared, without the app's prefix)."""
    return getattr(request.scope.get("route"), "path", None)


# Declared for OpenAPI (Swagger's Authorize); the check itself is Gate.caller's.
BEARER = HTTPBearer(auto_error=False)
API_KEY_HEADER = APIKeyHeader(name="X-Api-Key", auto_error=False)


def model_cards(args: AppArgs, health: Health) -> list[dict[str, Any]]:
    """``/v1/models``: the layout's model, then every recognizer (its ``id`` is what a request's
    ``model`` names) with its state (loaded, loading, not loaded) and GPU budget."""
    card = {"object": "model", "owned_by": "serve_app"}
    cards = [
        {"id": str(info.get("name")), **card, "deployment": deployment, **info}
        for deployment, info in health.models.items()
        if info.get("role") == "layout"
    ]
    for name, rec in args.recognizers.items():
        deployment = args.deployment_of(name)
        status = health.deployments.get(deployment, {}).get("status")
        known = health.recognizers.get(name, {})
        # A swap group's replica says which of its models is awake; others are loaded once known.
        state = known.get("state") or ("loaded" if known else "not loaded" if status in FAILED else "loading")
        budget = getattr(rec, "gpu_budget_gb", None)  # the CPU readers have none
        swappable = name in args.swap_group
        cards.append({"id": name, **card, **known, "deployment": deployment, "state": state,
                      **({"gpu_budget_gb": budget} if budget else {}),
                      **({"swappable": True} if swappable else {})})  # fmt: skip
    return cards


def _masked(exc: ServeAppError, request_id: str) -> ServeAppError:
    """A 500's problem without its cause (which can name paths, hosts, a model's internals)."""
    masked = ServeAppError(f"{exc.title.lower()}; the server log has the cause under request id {request_id}")
    masked.type, masked.title = exc.type, exc.title
    return masked


class HeaderLimit:
    """A request whose header names and values pass ``limit`` bytes is a 431 before anything runs."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(name) + len(value) for name, value in scope["headers"])
            if size > self.limit:
                err = HeadersTooLarge(f"the request's headers are {size} bytes; the limit is {self.limit}")
                await problem_response(err, request_id(Request(scope)))(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _authenticator(gate: Gate) -> list[Any]:
    """The app-wide dependency that names the caller (``request.state.caller``) before a body is
    read; with keys configured, OpenAPI shows both ways to send one (Swagger's Authorize)."""
    if not gate.enabled:

        async def anonymous(request: Request) -> None:
            request.state.caller = gate.caller(request.headers)

        return [Depends(anonymous)]

    async def authenticate(
        request: Request,
        _bearer: Annotated[Any, Security(BEARER)],
        _header: Annotated[Any, Security(API_KEY_HEADER)],
    ) -> None:
        route = request.scope.get("route")
        path = getattr(route, "path", None)
        request.state.caller = (
            gate.visitor(request.headers) if path in OPEN_ROUTES else gate.caller(request.headers)
        )

    return [Depends(authenticate)]


def _probes_without_security(app: FastAPI) -> None:
    """The app-wide key dependency puts a security requirement on every operation; the open
    routes' are taken out of the schema, so that it says what is enforced."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            for path, operations in generate()["paths"].items():
                if path in OPEN_ROUTES:
                    for operation in operations.values():
                        operation.pop("security", None)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def create_api(args: AppArgs, backend: Backend, meter: Meter | None = None) -> FastAPI:
    index = (UI / "index.html").read_text(encoding="utf-8").replace("{{VERSION}}", __version__)
    results = ResultStore(Storage(args.storage)) if args.storage is not None else None
    service = DocumentService(args, backend, results, meter)
    gate = Gate(args.auth)
    in_flight = 0
    app = FastAPI(
        title="serve_app",
        version=__version__,
        description="Document OCR on Ray Serve: layout + recognizer behind one HTTP API.",
        dependencies=_authenticator(gate),
        responses=problems(431, 500),  # any route: the header limit, and a masked failure
    )
    app.add_middleware(HeaderLimit, limit=args.limits.max_header_bytes)
    _probes_without_security(app)

    @app.exception_handler(ServeAppError)
    async def on_app_error(request: Request, exc: ServeAppError) -> JSONResponse:
        rid = request_id(request)
        if exc.status >= 500 and not isinstance(exc, ServiceUnavailable | DeadlineExceeded):
            # The cause is for the operator's log, not for the client (it can name paths, hosts).
            logger.error("request %s failed: %s", rid, exc.detail, exc_info=exc)
            exc = _masked(exc, rid)
        else:
            logger.warning("%s: %s", exc.title, exc.detail)
        return problem_response(exc, rid, _route(request), getattr(request.state, "log_id", None))

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(BadRequest(str(exc.errors())), request_id(request), _route(request))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = ServeAppError(str(exc.detail))
        err.status, err.title = exc.status_code, str(exc.detail)
        err.type = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem_response(err, request_id(request), _route(request))

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = request_id(request)
        logger.error("request %s failed unexpectedly", rid, exc_info=exc)
        return problem_response(_masked(ServeAppError(""), rid), rid, _route(request))

    @app.get("/", include_in_schema=False)
    async def page(request: Request) -> HTMLResponse:
        """The web page; its links are relative to <base href>, the app's route prefix."""
        base = html.escape(request.scope.get("root_path", ""))
        return HTMLResponse(index.replace("{{BASE}}", base), headers=PAGE_HEADERS)

    app.mount("/ui", StaticFiles(directory=UI), name="ui")  # the page's script and style, open to all

    @app.get(
        "/health",
        summary="Liveness with detail; 200 while the ingress answers (with keys set, the detail "
        "only for a caller with a key)",
        response_model=None,
        responses=ok(HealthOut),
    )
    async def health(request: Request) -> dict[str, Any]:
        h = await backend.health()
        if request.state.caller == PROBE:  # keys are set and none was given: no names, no messages
            return {"status": h.status, "version": __version__}
        return {
            "status": h.status,
            "reason": h.reason,
            "deployments": h.deployments,
            "models": h.models,
            "recognizers": h.recognizers,
            "storage": await results.storage.status() if results is not None else "disabled",
            "version": __version__,
        }

    @app.get(
        "/livez",
        summary="200 while this ingress process's event loop turns (no model is asked)",
        response_model=None,
        responses=ok(LiveOut),
    )
    async def livez() -> dict[str, str]:
        return {"status": "alive"}

    @app.get(
        "/ready",
        summary="200 only when every deployment has a replica with loaded models",
        response_model=None,
        responses={**ok(ReadyOut), **problems(503)},
    )
    async def ready(request: Request) -> dict[str, Any]:
        h = await backend.health()
        if h.status != "ready":  # the reason names deployments: for a caller with a key only
            raise NotReady(
                f"service is {h.status}" + ("" if request.state.caller == PROBE else f": {h.reason}")
            )
        return {"status": "ready"}

    @app.get(
        "/v1/models",
        summary="The layout model and every configured recognizer, with its state (OpenAI-compatible list)",
        response_model=None,
        responses={**ok(ModelList), **problems(401)},
    )
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": model_cards(args, await backend.health())}

    add_chat_routes(app, args, backend, gate)
    add_job_routes(app, args, backend, service, gate)

    @app.post(
        "/v1/ocr",
        summary="OCR a document (multipart 'file' or JSON with base64 'file', 'url' or 's3_uri')",
        openapi_extra=OCR_REQUEST_BODY,
        response_model=None,
        responses={
            **ok(OcrResult, "the document read"),
            **problems(400, 401, 404, 408, 413, 415, 422, 429, 503, 504),
        },
    )
    async def ocr(request: Request, response: Response) -> dict[str, Any]:
        with admitted(request):
            data, opts = await read_document_request(request, args, results, OcrOptions, OcrJsonRequest)
            if opts.store and results is None:
                raise StorageNotConfigured(
                    "store: true needs S3 storage, and none is configured (storage: in the config)"
                )
            body, cache = await read_now(
                request, data, opts.options(), opts.store, opts.timeout_s, opts.page_images
            )
        if cache is not None:
            response.headers["x-cache"] = cache
        return body

    @contextmanager
    def admitted(request: Request) -> Iterator[None]:
        """A slot among this replica's documents at once (503 when full), and the caller's (429)."""
        nonlocal in_flight
        if in_flight >= args.ingress.max_documents:
            raise Overloaded(
                f"{in_flight} documents are being read on this replica, its limit; retry shortly",
                retry_after_s=args.ingress.deployment.retry_after_s,
            )
        with gate.document(request.state.caller):
            in_flight += 1
            try:
                yield
            finally:
                in_flight -= 1

    async def read_now(
        request: Request,
        data: bytes,
        options: Options,
        store: bool,
        timeout_s: float | None,
        page_images: bool = False,
    ) -> tuple[dict[str, Any], Cache | None]:
        # The x-request-timeout-seconds header is Serve's own: its proxy answers 408 and
        # cancels the request. The body's timeout_s and the configured default land here.
        timeout_s = timeout_s or args.ingress.request_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                admit = partial(gate.take, request.state.caller)
                return await service.read(data, options, store, request_id(request), admit, page_images)
        except TimeoutError:
            raise DeadlineExceeded(
                f"not done within {timeout_s:g} s; pending work was cancelled "
                "(raise timeout_s, send fewer pages, or use an async job)"
            ) from None

    @app.post(
        paddlex.ENDPOINT,
        summary="PaddleX's PaddleOCR-VL serving protocol (file as URL or base64; layoutParsingResults)",
        openapi_extra=json_request_body(paddlex.LayoutParsingRequest),
        response_model=None,
        responses={
            **ok(paddlex.LayoutParsingAnswer, "PaddleX's envelope: logId, errorCode 0, errorMsg, result"),
            **problems(400, 401, 408, 413, 415, 422, 429, 503, 504),
        },
    )
    async def layout_parsing(request: Request) -> dict[str, Any]:
        with admitted(request):
            if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
                raise UnsupportedMediaType("send the PaddleX request as application/json")
            limit = args.limits.max_upload_bytes
            raw = await read_bounded(request, json_ceiling(limit), args.limits.body_timeout_s)
            asked = await parse_json(raw, paddlex.LayoutParsingRequest)
            request.state.log_id = asked.logId  # errors from here on echo it, as PaddleX's do
            source, options = asked.checked()
            data = within_limit(await json_document(source, args, results), limit)
            paddlex.check_file_type(asked.fileType, MEDIA_TYPES[sniff(data)])
            body, _ = await read_now(request, data, options, False, None)
        return paddlex.infer_response(body, asked, asked.logId or request_id(request))

    return app
