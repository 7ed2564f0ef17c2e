"""Reading a document: the one path that a ``/v1/ocr`` request and a job runner both take.

Open it and choose its pages (in a thread: PDFium is slow on large files and holds a process-wide
lock, so on the event loop it would stall every other request, health probes included), gate on the
models being ready, normalise the language, key the result, read the pages, assemble the answer.
The routes add only HTTP (status, headers, deadline); the runner only slices, progress and leases.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Literal, TypeVar

import numpy as np

from .assemble import page_json, result_body
from .backend import Engines
from .config import AppArgs, LimitsArgs, ocr_tasks, reads_pages
from .documents import Document
from .errors import BadRequest, NotReady, StorageUnavailable
from .metrics import Meter
from .pipeline import Options, RecognizerClient, process_document
from .results import ResultStore, jpeg, page_image_name
from .routing import ByScript

logger = logging.getLogger("ray.serve.serve_app.service")

T = TypeVar("T")
Cache = Literal["hit", "miss"]
INLINE_IMAGE_PX = 1600  # the longest side of a page image answered inline (page_images)


def result_key(
    data: bytes, pages: Sequence[int], dpi: int, options: Options, models: Mapping[str, Any]
) -> str:
    """The input bytes, what changes the output (the pages, the DPI they are rendered at, layout,
    language and the use of a PDF's text layer) and the models' names: the same document asked
    the same way of the same models is the same key, so a retried request or job writes the
    same objects again."""
    asked = {
        "pages": list(pages),
        "dpi": dpi,
        "layout": options.layout,
        "lang": options.lang,
        "text_layer": options.text_layer,
        "ocr_tasks": sorted(options.ocr_tasks),
    }
    digest = hashlib.sha256(data)
    digest.update(json.dumps({"options": asked, "models": models}, sort_keys=True, default=str).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Opened:
    doc: Document
    indices: list[int]  # the pages asked for, 0-based, each within the pixel limit
    ms: float  # what opening and checking them took


class DocumentService:
    def __init__(
        self, args: AppArgs, engines: Engines, results: ResultStore | None, meter: Meter | None = None
    ) -> None:
        self._args, self._engines, self.results = args, engines, results
        self.meter = meter or Meter()

    @asynccontextmanager
    async def opened(
        self, data: bytes, dpi: int | None, pages: str | Sequence[int] | None
    ) -> AsyncIterator[Opened]:
        """``pages``: a range as the client wrote it, or indices already checked (a job's)."""
        started = time.perf_counter()
        doc, indices = await in_thread(
            partial(_open, data, self._args.limits, dpi, pages), lambda opened: opened[0].close()
        )
        try:
            yield Opened(doc, indices, round((time.perf_counter() - started) * 1000, 1))
        finally:
            await in_thread(doc.close)

    def model(self, model: str | None) -> str:
        """The recognizer a request names (the default when it names none); 400 if there is none."""
        recognizers = self._args.recognizers
        name = model or next(iter(recognizers))
        if name not in recognizers:
            raise BadRequest(f"no model {name!r}; the models are: {', '.join(recognizers)}")
        return name

    def engines(self, model: str | None) -> Engines:
        """The engines as the recognizer ``model`` reads with them: the one place it is chosen."""
        return self._engines.select(self.model(model))

    def _routes(self, options: Options) -> dict[str, str]:
        """The recognizers that read by script (``route_by_script``): for requests that named no
        model only (``routed``, or not yet resolved); one that names its model gets it alone."""
        routes = self._args.route_by_script
        if routes is None or not (options.routed or options.model is None):
            return {}
        return routes.readers

    def reader(self, options: Options) -> RecognizerClient:
        """The recognizer that reads a request's regions: its model's, or the script router."""
        recognizer = self.engines(options.model).recognizer
        if not (routes := self._routes(options)):
            return recognizer
        fallback = self.engines(routes["fallback"]).recognizer if "fallback" in routes else None
        return ByScript(recognizer, self.engines(routes["cyrillic"]).recognizer, fallback)

    async def ready_models(self, options: Options) -> dict[str, Any]:
        """The names of the models that read as ``options`` ask (with those it routes to, by their
        role), once every deployment is ready to read (else 503)."""
        health = await self.engines(options.model).health()
        if health.status != "ready":
            raise NotReady(f"service is {health.status}: {health.reason}")
        models = {k: v.get("name") for k, v in health.models.items()}
        for role, name in self._routes(options).items():
            routed = await self.ready_models(Options(model=name))
            models[role] = routed[self._args.deployment_of(name)]
        return models

    async def options(self, options: Options, doc: Document) -> Options:
        """A client's options as they are read: the model named, the language checked (``auto``,
        or the recognizer's own spelling: ``ru`` and ``rus+eng`` are one cache key, and a job asks
        for what can be read; 400 if it has none), the config's part added; an image has no text
        layer (``only`` is a 400 for it, and ``auto`` is ``off``: one cache key)."""
        if doc.kind != "pdf":
            if options.text_layer == "only":
                raise BadRequest(
                    "text_layer 'only' reads a PDF's own text; an image has none (use auto or off)"
                )
            options = replace(options, text_layer="off")
        model = self.model(options.model)
        lang = options.lang if options.lang == "auto" else await self.engines(model).check_lang(options.lang)
        routed = bool(self._routes(options))
        return replace(
            options, model=model, routed=routed, lang=lang, ocr_tasks=ocr_tasks(self._args.recognizers[model])
        )

    async def key(
        self, data: bytes, opened: Opened, indices: Sequence[int], options: Options, models: Mapping[str, Any]
    ) -> str:
        """``result_key``, hashed in a thread: a 50 MiB upload takes ~0.1 s."""
        return await asyncio.to_thread(result_key, data, indices, opened.doc.dpi, options, models)

    async def read_pages(
        self,
        opened: Opened,
        indices: Sequence[int],
        options: Options,
        concurrency: int,
        key: str | None,
        inline_images: bool = False,
    ) -> list[dict[str, Any]]:
        """Pages as ``page_json``; with ``key``, each page's image stored beside the result; with
        ``inline_images``, each page's image in its answer (``image_data``, a JPEG data: URL)."""
        save = partial(self.results.save_page, key) if key is not None and self.results is not None else None
        inline: dict[int, str] = {}

        async def sink(page: int, image: np.ndarray) -> None:
            if inline_images:
                inline[page] = await asyncio.to_thread(data_url, image)
            if save is not None:
                await save(page, image)

        engines = self.engines(options.model)
        pages = await process_document(
            opened.doc,
            indices,
            options,
            None if reads_pages(self._args.recognizers[self.model(options.model)]) else engines.layout,
            self.reader(options),
            concurrency,
            on_page=sink if save is not None or inline_images else None,
        )
        answered = [page_json(p, page_image_name(p.page) if save is not None else None) for p in pages]
        self.meter.pages(answered)
        for page in answered:
            if page["page"] in inline:
                page["image_data"] = inline[page["page"]]
        return answered

    async def read(
        self,
        data: bytes,
        options: Options,
        store: bool,
        request_id: str | None,
        admit: Callable[[int], None] = lambda pages: None,
        page_images: bool = False,
    ) -> tuple[dict[str, Any], Cache | None]:
        """A document read now (a sync request): its answer, and whether it came from the store
        (None without one). ``store``: write the result and page images, answer with their URLs.
        ``admit`` is told the pages chosen once the document is open, before anything reads them
        (it may refuse them by raising). ``page_images``: each page's image in the answer too
        (never stored: a stored answer gets them rendered again)."""
        started = time.perf_counter()
        async with self.opened(data, options.dpi, options.pages) as opened:
            admit(len(opened.indices))
            models = await self.ready_models(options)
            options = await self.options(options, opened.doc)
            key = None
            if self.results is not None:  # hashing a 50 MiB upload costs ~0.1 s: only with a store to ask
                key = await self.key(data, opened, opened.indices, options, models)
                cached = await self._cached(key, store)
                self.meter.record("serve_app_cache", 1, {"result": "miss" if cached is None else "hit"})
                if cached is not None:
                    cached["request_id"] = request_id
                    if store:
                        cached["storage"] = await self.results.urls(key, cached)
                    if page_images:
                        await _inline_rendered(opened.doc, cached["pages"])
                    return cached, "hit"
            t = time.perf_counter()
            pages = await self.read_pages(
                opened,
                opened.indices,
                options,
                self._args.ingress.max_concurrent_pages,
                key if store else None,
                page_images,
            )
        timings = {
            "decode": opened.ms,
            "pages": round((time.perf_counter() - t) * 1000, 1),
            "total": round((time.perf_counter() - started) * 1000, 1),
        }
        body = result_body(pages, request_id, models, opened.doc.describe(opened.indices), timings)
        if key is None:  # no store configured
            return body, None
        assert self.results is not None
        if store:  # what is stored is the result, without the images answered inline
            pages = [{k: v for k, v in page.items() if k != "image_data"} for page in body["pages"]]
            body["storage"] = await self.results.save(key, {**body, "pages": pages})
        return body, "miss"

    async def _cached(self, key: str, store: bool) -> dict[str, Any] | None:
        """A stored answer to the same document, options and models. An unreachable store only
        matters when the caller asked to store: otherwise the document is simply read again,
        without waiting for S3's timeouts on every request while it is known to be down."""
        assert self.results is not None
        if not store and await self.results.storage.status() != "ok":
            return None
        try:
            return await self.results.load(key, touch=store)
        except StorageUnavailable:
            if store:
                raise
            logger.warning("result cache unreachable; reading the document again")
            return None


def data_url(image: np.ndarray) -> str:
    """A page image as answered inline: a JPEG ``data:`` URL, at most ``INLINE_IMAGE_PX`` a side."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg(image, INLINE_IMAGE_PX)).decode()


async def _inline_rendered(doc: Document, pages: Sequence[dict[str, Any]]) -> None:
    """Each page's image rendered again and put in its answer (a stored answer has none)."""
    for page in pages:
        image = (await in_thread(partial(doc.render, int(page["page"]) - 1))).image
        page["image_data"] = await asyncio.to_thread(data_url, image)


def _open(
    data: bytes, limits: LimitsArgs, dpi: int | None, pages: str | Sequence[int] | None
) -> tuple[Document, list[int]]:
    doc = Document(data, limits, dpi)
    try:
        return doc, doc.select(pages) if pages is None or isinstance(pages, str) else list(pages)
    except BaseException:
        doc.close()
        raise


async def in_thread(fn: Callable[[], T], undo: Callable[[T], object] | None = None) -> T:
    """``fn()`` in a worker thread. If the caller is cancelled meanwhile, the thread still runs to
    its end (a thread cannot be stopped), and ``undo`` is then applied to what it made, in a thread
    of its own: a document opened for a request that has gone away is closed, not leaked."""
    task = asyncio.ensure_future(asyncio.to_thread(fn))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if undo is not None:
            task.add_done_callback(partial(_undo_later, undo))
        raise


def _undo_later(undo: Callable[[Any], object], task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is None:
        asyncio.get_running_loop().run_in_executor(None, undo, task.result())
