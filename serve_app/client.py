"""A client for serve_app's HTTP API, sync (``Client``) and async (``AsyncClient``), over httpx.

    from serve_app.client import Client

    with Client("http://127.0.0.1:8000", api_key=None) as c:
        result = c.ocr("scan.pdf", pages="1-3", lang="ru")
        print(result["markdown"])
        job = c.submit("book.pdf")
        done = c.wait(job["id"], on_progress=lambda view: print(view["progress"]))
        body = c.result(job["id"])

A document is a path, bytes, a ``(name, bytes)`` pair, or an ``http(s)://`` URL or ``s3://`` URI
that the service reads itself. Every answer is the service's JSON as a dict; an error answer
raises ``ServiceError`` with its problem+json, a request that never got an answer raises
httpx's ``TransportError``. The CLI (``serve-app``), the bench and the tests go through here.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# A retried 503 or 429 waits what Retry-After says, but never longer than this.
MAX_RETRY_WAIT_S = 30.0

Document = str | os.PathLike[str] | bytes | tuple[str, bytes]
Progress = Callable[[dict[str, Any]], None]


class ServiceError(Exception):
    """An error answer: its status, its problem+json (``type``, ``detail``, ``request_id``) and,
    for 429 and 503, the seconds Retry-After asks for."""

    def __init__(self, status: int, problem: dict[str, Any], retry_after_s: float | None = None) -> None:
        self.status, self.problem, self.retry_after_s = status, problem, retry_after_s
        self.type = str(problem.get("type", "")).rsplit("/", 1)[-1]
        self.detail = str(problem.get("detail") or problem.get("title") or "")
        super().__init__(f"{status} {self.type}: {self.detail}")

    @classmethod
    def of(cls, response: httpx.Response) -> ServiceError:
        try:
            problem = response.json()
        except ValueError:
            problem = {"detail": response.text[:200]}
        if not isinstance(problem, dict):
            problem = {"detail": str(problem)[:200]}
        retry = response.headers.get("retry-after", "")
        return cls(response.status_code, problem, float(retry) if retry.isdigit() else None)


def _json(response: httpx.Response) -> Any:
    """A 2xx answer's JSON; anything else (an error, a redirect, a page that is not the service's)
    is a ServiceError."""
    if not 200 <= response.status_code < 300:
        raise ServiceError.of(response)
    try:
        return response.json()
    except ValueError:
        raise ServiceError(
            response.status_code, {"detail": "the answer is not JSON: is --url the service?"}
        ) from None


def _is_ready(response: httpx.Response) -> bool:
    if response.status_code not in (200, 503):
        raise ServiceError.of(response)
    return response.status_code == 200


def _form_value(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Call:
    """One request and how its answer is read; the clients only send it."""

    method: str
    path: str
    read: Callable[[httpx.Response], Any] = _json
    kwargs: dict[str, Any] = field(default_factory=dict)
    retry: bool = True  # 429s and 503s are sent again (up to the client's retries)

    def retry_in(self, response: httpx.Response, attempt: int, retries: int) -> float | None:
        """Seconds to wait before sending again, or None to read this answer."""
        if not self.retry or response.status_code not in (429, 503) or attempt >= retries:
            return None
        retry = response.headers.get("retry-after", "")
        return min(float(retry) if retry.isdigit() else 2.0**attempt, MAX_RETRY_WAIT_S)


def document_call(path: str, document: Document, options: dict[str, Any]) -> Call:
    """``document`` and its options, as multipart (a file) or JSON (a URL or ``s3://`` URI)."""
    options = {k: v for k, v in options.items() if v is not None}
    if isinstance(document, str) and document.startswith(("http://", "https://", "s3://")):
        source = "s3_uri" if document.startswith("s3://") else "url"
        return Call("POST", path, kwargs={"json": {source: document, **options}})
    if isinstance(document, bytes):
        name, data = "document", document
    elif isinstance(document, tuple):
        name, data = document
    else:
        name, data = Path(document).name, Path(document).read_bytes()
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    form = {k: _form_value(v) for k, v in options.items()}
    return Call("POST", path, kwargs={"files": {"file": (name, data, media_type)}, "data": form})


class _Api:
    """The calls, once; ``Client`` answers them, ``AsyncClient`` answers them awaitably."""

    def __init__(self, url: str, api_key: str | None, timeout_s: float, retries: int) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._options: dict[str, Any] = {"base_url": self.url, "headers": headers, "timeout": timeout_s}

    def _send(self, call: Call) -> Any:
        raise NotImplementedError

    def ocr(self, document: Document, **options: Any) -> Any:
        """Read a document now: the JSON of ``POST /v1/ocr`` (options: pages, lang, layout, dpi,
        text_layer, model, timeout_s, store)."""
        return self._send(document_call("/v1/ocr", document, options))

    def submit(self, document: Document, **options: Any) -> Any:
        """Queue a document as a job (``POST /v1/jobs``): the job's view, with its ``id``."""
        return self._send(document_call("/v1/jobs", document, options))

    def job(self, job_id: str) -> Any:
        """A job's view: status, progress (pages done / total), result URLs or error."""
        return self._send(Call("GET", f"/v1/jobs/{quote(job_id, safe='')}"))

    def result(self, job_id: str) -> Any:
        """A succeeded job's result: the JSON of ``/v1/ocr``."""
        return self._send(Call("GET", f"/v1/jobs/{quote(job_id, safe='')}/result"))

    def cancel(self, job_id: str) -> Any:
        return self._send(Call("DELETE", f"/v1/jobs/{quote(job_id, safe='')}"))

    def health(self) -> Any:
        return self._send(Call("GET", "/health"))

    def ready(self) -> Any:
        """True when every deployment has a replica with its models loaded."""
        return self._send(Call("GET", "/ready", read=_is_ready, retry=False))  # its 503 is the answer

    def models(self) -> Any:
        return self._send(Call("GET", "/v1/models"))


class Client(_Api):
    """Blocking calls over one connection pool; use as a context manager or ``close()`` it."""

    def __init__(
        self, url: str = DEFAULT_URL, api_key: str | None = None, timeout_s: float = 600.0, retries: int = 0
    ) -> None:
        super().__init__(url, api_key, timeout_s, retries)
        self._http = httpx.Client(**self._options)

    def _send(self, call: Call) -> Any:
        for attempt in range(self.retries + 1):
            response = self._http.request(call.method, call.path, **call.kwargs)
            if (wait := call.retry_in(response, attempt, self.retries)) is None:
                break
            time.sleep(wait)
        return call.read(response)

    def wait(self, job_id: str, poll_s: float = 1.0, on_progress: Progress | None = None) -> dict[str, Any]:
        """Poll a job until it has ended; its last view (``status`` tells how it ended)."""
        while True:
            view = self.job(job_id)
            if on_progress is not None:
                on_progress(view)
            if view["status"] in TERMINAL:
                return dict(view)
            time.sleep(poll_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Api):
    """The same calls as ``Client``, each awaited; safe to share between tasks."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        retries: int = 0,
        max_connections: int | None = 100,
    ) -> None:
        super().__init__(url, api_key, timeout_s, retries)
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = httpx.AsyncClient(limits=limits, **self._options)

    async def _answer(self, call: Call) -> Any:
        for attempt in range(self.retries + 1):
            response = await self._http.request(call.method, call.path, **call.kwargs)
            if (wait := call.retry_in(response, attempt, self.retries)) is None:
                break
            await asyncio.sleep(wait)
        return call.read(response)

    def _send(self, call: Call) -> Awaitable[Any]:
        return self._answer(call)

    async def wait(
        self, job_id: str, poll_s: float = 1.0, on_progress: Progress | None = None
    ) -> dict[str, Any]:
        """Poll a job until it has ended; its last view (``status`` tells how it ended)."""
        while True:
            view = await self.job(job_id)
            if on_progress is not None:
                on_progress(view)
            if view["status"] in TERMINAL:
                return dict(view)
            await asyncio.sleep(poll_s)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
