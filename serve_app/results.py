"""Results in S3: stored under a content hash, answered again from there, handed out as presigned
URLs.

A result's key is ``results/<sha256>/`` where the hash (``service.result_key``) covers the input
bytes, the options that change the output, and the models that produced it, so the same document
asked the same way of the same models is the same key, and a retried request writes the same
objects again (idempotent).
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .storage import Storage

PAGE_JPEG_QUALITY = 85


def page_image_name(page: int) -> str:
    """Where a page's image lies, relative to its result.json (``page`` is 1-based)."""
    return f"pages/{page:04d}.jpg"


def jpeg(image: np.ndarray, longest: int | None = None) -> bytes:
    """``image`` as a JPEG; with ``longest``, scaled down first so that no side passes it."""
    from PIL import Image

    picture = Image.fromarray(image)
    if longest is not None and max(picture.size) > longest:
        picture.thumbnail((longest, longest))
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=PAGE_JPEG_QUALITY)
    return out.getvalue()


def _last_written(objects: Sequence[tuple[str, float]]) -> float:
    """When a result was last written or handed out: its result.json, else its newest object."""
    marks = [t for name, t in objects if name.endswith("/result.json")] or [t for _, t in objects]
    return max(marks)


class ResultStore:
    """OCR answers in S3: ``results/<key>/result.json``, ``result.md`` and ``pages/NNNN.jpg``.
    Each result is kept ``retention_s`` after it was last written or answered from."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def load(self, key: str, touch: bool = False) -> dict[str, Any] | None:
        """The stored answer, or None. ``touch``: write it again, so that its retention starts anew
        (it is about to be handed out)."""
        data = await self.storage.get(f"results/{key}/result.json")
        if data is None:
            return None
        if touch:
            await self.storage.put(f"results/{key}/result.json", data, "application/json")
        return dict(json.loads(data))

    async def page_image(self, key: str, page: int) -> bytes | None:
        """A stored page's JPEG (``page`` 1-based, as in the answer), or None."""
        return await self.storage.get(f"results/{key}/{page_image_name(page)}")

    async def save_page(self, key: str, page: int, image: np.ndarray) -> None:
        data = await asyncio.to_thread(jpeg, image)
        await self.storage.put(f"results/{key}/{page_image_name(page)}", data, "image/jpeg")

    async def save(self, key: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Write the answer (the JSON last: its presence means the result is whole) and return
        presigned URLs of its objects. The page images are written by ``save_page`` before."""
        await self.storage.put(f"results/{key}/result.md", str(body["markdown"]).encode(), "text/markdown")
        await self.storage.put(
            f"results/{key}/result.json", json.dumps(body, ensure_ascii=False).encode(), "application/json"
        )
        return await self.urls(key, body)

    async def urls(self, key: str, body: Mapping[str, Any]) -> dict[str, Any]:
        presign = self.storage.presign
        return {
            "key": key,
            "json_url": await presign(f"results/{key}/result.json"),
            "markdown_url": await presign(f"results/{key}/result.md"),
            "page_image_urls": [
                await presign(f"results/{key}/{p['image']}") for p in body["pages"] if "image" in p
            ],
        }

    async def sweep(self, retention_s: float, now: float | None = None) -> int:
        """Delete results not written for ``retention_s`` (a result without its result.json, left
        by a request that died, by its newest object). Returns how many results went."""
        now = time.time() if now is None else now
        expired = 0
        for key, objects in (await self.storage.list_groups("results/")).items():
            if _last_written(objects) >= now - retention_s:
                continue
            # Listed a while ago: a cache hit or a resumed job may have written it since.
            objects = await self.storage.list(f"results/{key}/")
            if objects and _last_written(objects) < now - retention_s:
                await self.storage.delete([name for name, _ in objects])
                expired += 1
        return expired
