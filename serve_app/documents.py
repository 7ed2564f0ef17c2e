"""Bytes -> page images (PNG, JPEG, TIFF, WebP, BMP, PDF), with every limit checked before rendering."""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from .config import LimitsArgs
from .errors import (
    BadRequest,
    InvalidPageRange,
    PageTooLarge,
    PayloadTooLarge,
    TooManyPages,
    UnprocessableDocument,
    UnsupportedMediaType,
    unreadable,
)
from .pdf_process import pdf_process
from .pdf_streams import check_streams
from .text_layer import Char

# PIL's own bomb check would fire on big but legal pages; ours (max_page_pixels) runs first.
Image.MAX_IMAGE_PIXELS = None

MEDIA_TYPES = {
    "pdf": "application/pdf",
    "png": "image/png",
    "jpeg": "image/jpeg",
    "tiff": "image/tiff",
    "webp": "image/webp",
    "bmp": "image/bmp",
}


def sniff(data: bytes) -> str:
    """The document kind from its leading bytes; the client's content type is not trusted."""
    head = data[:1024]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"BM"):
        return "bmp"
    if b"%PDF-" in head:
        return "pdf"
    raise UnsupportedMediaType(
        "unsupported document type: send a PDF or a PNG, JPEG, TIFF, WebP or BMP image"
    )


def parse_page_range(spec: str | None, page_count: int, max_pages: int | None = None) -> list[int]:
    """``"1-3,5"`` (1-based, inclusive) -> ``[0, 1, 2, 4]``; None or "" means every page.

    ``max_pages`` is checked on the spans before any list is built (a spec may name a million pages).
    """
    if spec is None or not spec.strip():
        spec = f"1-{page_count}"
    spans: list[tuple[int, int]] = []
    for part in spec.split(","):
        part = part.strip()
        first, sep, last = part.partition("-")
        try:
            lo = int(first)
            hi = int(last) if sep and last.strip() else (page_count if sep else lo)
        except ValueError:
            raise InvalidPageRange(f"bad page range {spec!r}: use numbers and ranges like '1-3,5'") from None
        if lo < 1 or hi < lo:
            raise InvalidPageRange(f"bad page range {part!r} in {spec!r}")
        if hi > page_count:
            raise InvalidPageRange(
                f"page range {part!r} is past the end: the document has {page_count} page(s)"
            )
        spans.append((lo, hi))
    if max_pages is not None:
        count, end = 0, 0
        for lo, hi in sorted(spans):  # distinct pages, counted on merged spans
            if hi > end:
                count += hi - max(lo, end + 1) + 1
                end = hi
        if count > max_pages:
            raise TooManyPages(
                f"{count} pages selected; the limit is {max_pages} per request (choose a range with 'pages')"
            )
    return list(dict.fromkeys(i for lo, hi in spans for i in range(lo - 1, hi)))


@dataclass(frozen=True)
class Page:
    index: int  # 0-based position in the document
    image: np.ndarray  # H x W x 3, uint8, RGB
    chars: tuple[Char, ...] = ()  # a PDF page's text layer, in the image's pixels (when asked for)


class Document:
    """An opened document: page count known, pages rendered one at a time on demand."""

    def __init__(self, data: bytes, limits: LimitsArgs, dpi: int | None = None) -> None:
        if len(data) > limits.max_upload_bytes:
            raise PayloadTooLarge(f"document is {len(data)} bytes; the limit is {limits.max_upload_bytes}")
        if not data:
            raise UnprocessableDocument("the document is empty")
        self.kind = sniff(data)
        self.media_type = MEDIA_TYPES[self.kind]
        self.dpi = dpi or limits.default_dpi
        if not 36 <= self.dpi <= limits.max_dpi:
            raise BadRequest(f"dpi must be between 36 and {limits.max_dpi}, got {self.dpi}")
        self._limits = limits
        self._lock = threading.Lock()  # PIL's seek() is per image; a PDF is not closed mid-render
        self._closed = False
        if self.kind == "pdf":
            # Measured before PDFium sees it (a first line: the memory ceiling of the PDF process
            # is the second), and read in that process, not in this one.
            check_streams(data, limits.max_pdf_stream_bytes, limits.max_pdf_inflated_bytes)
            self._pdf = pdf_process(limits.pdf_memory_bytes, limits.pdf_timeout_s).open(data)
            self.page_count = self._pdf.opened.page_count
        else:
            with unreadable("the document cannot be opened"):
                self._image = Image.open(io.BytesIO(data))
                self.page_count = getattr(self._image, "n_frames", 1)
        if self.page_count < 1:
            raise UnprocessableDocument("the document has no pages")

    def describe(self, indices: Sequence[int]) -> dict[str, object]:
        """The ``document`` part of an answer: what was read of it."""
        return {
            "media_type": self.media_type,
            "page_count": self.page_count,
            "pages": [i + 1 for i in indices],
            "dpi": self.dpi if self.kind == "pdf" else None,
        }

    def select(self, spec: str | None) -> list[int]:
        indices = parse_page_range(spec, self.page_count, self._limits.max_pages)
        for i in indices:
            self._check_pixels(i)
        return indices

    def render(self, index: int, text_layer: bool = False) -> Page:
        """The page's image; with ``text_layer``, a PDF page's characters as well."""
        with self._lock:
            if self._closed:
                raise UnprocessableDocument("the document was closed (request cancelled)")
            if self.kind != "pdf":
                return Page(index, self._decode_frame(index))
            image, chars = self._pdf.render(index, self.dpi / 72, text_layer)
        return Page(index, image, chars)

    def close(self) -> None:
        """Waits for a render in progress: pdfium crashes if a document closes under it."""
        with self._lock:
            self._closed = True
            if self.kind == "pdf":
                self._pdf.close()
            else:
                self._image.close()

    def _size(self, index: int) -> tuple[int, int]:
        if self.kind == "pdf":
            w_pt, h_pt = self._pdf.opened.sizes[index]
            return round(w_pt * self.dpi / 72), round(h_pt * self.dpi / 72)
        with self._lock, unreadable(f"page {index + 1} cannot be read"):
            self._image.seek(index)
            return self._image.size

    def _check_pixels(self, index: int) -> None:
        w, h = self._size(index)
        if w * h > self._limits.max_page_pixels:
            raise PageTooLarge(
                f"page {index + 1} is {w}x{h} pixels; the limit is "
                f"{self._limits.max_page_pixels} pixels per page (lower the dpi or the image size)"
            )

    def _decode_frame(self, index: int) -> np.ndarray:
        with unreadable(f"image frame {index + 1} cannot be decoded"):
            self._image.seek(index)
            return _to_rgb(ImageOps.exif_transpose(self._image))


def _to_rgb(image: Image.Image) -> np.ndarray:
    image.load()
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent areas become white paper, not black.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    elif image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        peak = arr.max() or 1.0
        image = Image.fromarray((arr * (255.0 / peak)).astype(np.uint8))
    return np.ascontiguousarray(image.convert("RGB"))
