"""``/v1/jobs``: submit a document to be read in the background, follow it, fetch or cancel it.

The routes only read and write job records in S3 (``job_store.JobStore``); the Jobs deployment's
runners do the reading. A job is validated as a sync request would be (size, type, pages, pixels,
language) before it is accepted, so what is accepted can be read.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Path, Request, Response
from fastapi.responses import PlainTextResponse

from .auth import Gate
from .backend import Backend
from .bodies import DocumentOptions, JobJsonRequest, read_document_request, request_body_schema, request_id
from .config import AppArgs
from .errors import BadRequest, JobConflict, NotFound, StorageNotConfigured, StorageUnavailable
from .job_store import JobStore
from .jobs import JobRecord, job_view, new_job_id
from .results import ResultStore
from .schemas import JobView, OcrResult, ok, problems
from .service import DocumentService

JPEG = {"type": "string", "format": "binary"}


def succeeded(record: JobRecord) -> str:
    """The key of a succeeded job's result; ``JobConflict`` (saying why, if it failed) before then."""
    if record.status != "succeeded" or record.result_key is None:
        detail = (record.error or {}).get("detail", "") if record.status == "failed" else ""
        raise JobConflict(
            f"job {record.id} is {record.status}, not succeeded" + (f": {detail}" if detail else "")
        )
    return record.result_key


def add_job_routes(
    app: FastAPI,
    args: AppArgs,
    backend: Backend,
    service: DocumentService,
    gate: Gate,
) -> None:
    results = service.results
    jobs = JobStore(results.storage) if results is not None else None
    retry_after_s = args.storage.retry_after_s if args.storage is not None else 0

    def need_storage() -> tuple[JobStore, ResultStore]:
        if jobs is None or results is None:
            raise StorageNotConfigured(
                "jobs need S3 storage, and none is configured (storage: in the config)"
            )
        return jobs, results

    def base(request: Request) -> str:
        return str(request.scope.get("root_path", ""))

    async def view(request: Request, record: JobRecord) -> dict[str, Any]:
        _, stored = need_storage()
        urls = None
        if record.status == "succeeded" and record.result_key is not None:
            body = await stored.load(record.result_key)
            if body is None:
                raise NotFound(f"the result of job {record.id} has expired")
            urls = await stored.urls(record.result_key, body)
        return job_view(record, urls, base(request))

    @app.post(
        "/v1/jobs",
        status_code=202,
        summary="Queue a document to be read in the background (same inputs as /v1/ocr)",
        openapi_extra=request_body_schema(DocumentOptions, JobJsonRequest),
        response_model=None,
        responses={
            **ok(JobView, "queued", 202),
            **problems(400, 401, 404, 408, 413, 415, 422, 429, 503),
        },
    )
    async def submit(request: Request, response: Response) -> dict[str, Any]:
        store, stored = need_storage()
        # Known down: refuse at once rather than after S3's timeouts (nothing is half-accepted).
        if (state := await stored.storage.status()) != "ok":
            raise StorageUnavailable(
                f"jobs cannot be accepted while S3 is unreachable: {state}", retry_after_s
            )
        with gate.document(request.state.caller):
            data, opts = await read_document_request(request, args, results, DocumentOptions, JobJsonRequest)
            async with service.opened(data, opts.dpi, opts.pages) as opened:
                options = await service.options(opts.options(), opened.doc)
        now = time.time()
        record = JobRecord(
            id=new_job_id(),
            request_id=request_id(request),
            owner=request.state.caller,
            created_at=now,
            updated_at=now,
            media_type=opened.doc.media_type,
            page_count=opened.doc.page_count,
            pages=opened.indices,
            dpi=opts.dpi,
            layout=options.layout,
            lang=options.lang,
            text_layer=options.text_layer,
            ocr_tasks=sorted(options.ocr_tasks),
            model=options.model,
            routed=options.routed,
        )
        gate.take(request.state.caller, len(record.pages))  # a job's pages count when it is queued
        await store.submit(data, record)
        service.meter.record("serve_app_jobs", 1, {"event": "submitted"})
        backend.wake_jobs()
        response.headers["Location"] = f"{base(request)}/v1/jobs/{record.id}"
        return job_view(record, None, base(request))

    @app.get(
        "/v1/jobs/{job_id}",
        summary="A job's status, progress (pages done / total), and result URLs or error",
        response_model=None,
        responses={**ok(JobView), **problems(400, 401, 404, 503)},
    )
    async def status(request: Request, job_id: str) -> dict[str, Any]:
        store, _ = need_storage()
        return await view(request, await store.get(job_id, request.state.caller))

    @app.get(
        "/v1/jobs/{job_id}/result",
        summary="A succeeded job's result: the JSON of /v1/ocr, or ?format=markdown",
        responses={
            200: {
                "model": OcrResult,
                "description": "the result (JSON), or its Markdown with ?format=markdown",
                "content": {"text/markdown": {"schema": {"type": "string"}}},
            },
            **problems(400, 401, 404, 409, 503),
        },
        response_model=None,
    )
    async def result(
        request: Request, job_id: str, format: str = "json"
    ) -> dict[str, Any] | PlainTextResponse:
        store, stored = need_storage()
        if format not in ("json", "markdown"):
            raise BadRequest(f"format is json or markdown, not {format[:32]!r}")
        body = await stored.load(succeeded(await store.get(job_id, request.state.caller)))
        if body is None:
            raise NotFound(f"the result of job {job_id} has expired")
        if format == "markdown":
            return PlainTextResponse(str(body["markdown"]), media_type="text/markdown; charset=utf-8")
        return body

    @app.get(
        "/v1/jobs/{job_id}/pages/{page}",
        summary="A succeeded job's page image (JPEG) through the service, for clients that cannot "
        "reach the presigned S3 URLs",
        responses={
            200: {"description": "the page as it was read", "content": {"image/jpeg": {"schema": JPEG}}},
            **problems(400, 401, 404, 409, 503),
        },
        response_class=Response,
    )
    async def page_image(
        request: Request,
        job_id: str,
        page: int = Path(ge=1, le=100_000, description="1-based, as in the result"),
    ) -> Response:
        store, stored = need_storage()
        image = await stored.page_image(succeeded(await store.get(job_id, request.state.caller)), page)
        if image is None:
            raise NotFound(f"job {job_id} has no page {page} in its result")
        return Response(image, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.delete(
        "/v1/jobs/{job_id}",
        summary="Cancel a queued or running job (its runner stops within a few seconds)",
        response_model=None,
        responses={**ok(JobView, "cancelled (or already so)"), **problems(400, 401, 404, 409, 503)},
    )
    async def cancel(request: Request, job_id: str) -> dict[str, Any]:
        store, _ = need_storage()
        assert args.storage is not None
        record, cancelled = await store.cancel(job_id, args.storage.retention_s, request.state.caller)
        if not cancelled and record.status != "cancelled":
            raise JobConflict(f"job {job_id} has already {record.status}; there is nothing to cancel")
        if cancelled:
            service.meter.record("serve_app_jobs", 1, {"event": "cancelled"})
        return await view(request, record)
