"""Bytes -> page images (PNG, JPEG, TIFF, WebP, BMP, PDF), with every limit checked before rendering."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from .config import LimitsArgs
from .errors import (
    BadRequest,
    InvalidPageRange,
    PageTooLarge,
    PayloadTooLarge,
    ServeAppError,
    TooManyPages,
    UnprocessableDocument,
    UnsupportedMediaType,
)
from .pdf_streams import check_streams
from .text_layer import Char

logger = logging.getLogger("ray.serve.serve_app.documents")

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
        # PDFium is not thread-safe even across documents; PIL's seek() is per image.
        self._lock = _PDFIUM if self.kind == "pdf" else threading.Lock()
        self._closed = False
        if self.kind == "pdf":  # before PDFium (and outside its lock): it would inflate a bomb
            check_streams(data, limits.max_pdf_stream_bytes, limits.max_pdf_inflated_bytes)
        with self._lock, _unreadable("the document cannot be opened"):
            if self.kind == "pdf":
                self._pdf = _open_pdf(data)
                self.page_count = len(self._pdf)
            else:
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
            with _unreadable(f"page {index + 1} of the PDF cannot be read"):
                page = self._pdf[index]
            try:  # closed here, under the lock: a page left to the collector closes outside it
                image = self._render_pdf(page, index)
                chars = _page_chars_or_none(page, index, image.shape[1], image.shape[0]) if text_layer else ()
            finally:
                page.close()
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
        with self._lock, _unreadable(f"page {index + 1} cannot be read"):
            if self.kind == "pdf":
                w_pt, h_pt = self._pdf.get_page_size(index)
                scale = self.dpi / 72
                return round(w_pt * scale), round(h_pt * scale)
            self._image.seek(index)
            return self._image.size

    def _check_pixels(self, index: int) -> None:
        w, h = self._size(index)
        if w * h > self._limits.max_page_pixels:
            raise PageTooLarge(
                f"page {index + 1} is {w}x{h} pixels; the limit is "
                f"{self._limits.max_page_pixels} pixels per page (lower the dpi or the image size)"
            )

    def _render_pdf(self, page, index: int) -> np.ndarray:  # page: pdfium.PdfPage
        with _unreadable(f"page {index + 1} of the PDF cannot be rendered"):
            pil = page.render(scale=self.dpi / 72).to_pil()
            return np.ascontiguousarray(pil.convert("RGB"))

    def _decode_frame(self, index: int) -> np.ndarray:
        with _unreadable(f"image frame {index + 1} cannot be decoded"):
            self._image.seek(index)
            return _to_rgb(ImageOps.exif_transpose(self._image))


_PDFIUM = threading.RLock()


@contextmanager
def _unreadable(what: str) -> Iterator[None]:
    """Decoders of untrusted bytes raise all sorts (OSError, SyntaxError, KeyError, PdfiumError...)."""
    try:
        yield
    except ServeAppError:
        raise
    except Exception as exc:
        raise UnprocessableDocument(f"{what}: {type(exc).__name__}: {exc}") from None


def _open_pdf(data: bytes):  # -> pdfium.PdfDocument
    import pypdfium2 as pdfium

    return pdfium.PdfDocument(data)


def _page_chars_or_none(page, index: int, width: int, height: int) -> tuple[Char, ...]:  # page: PdfPage
    """The page's characters; none where its text cannot be read (the page is OCR'd then)."""
    try:
        return _page_chars(page, width, height)
    except Exception as exc:  # a broken text object in a page that renders
        logger.warning(
            "text layer of page %d not read, the page is OCR'd: %s: %s", index + 1, type(exc).__name__, exc
        )
        return ()


# Text render modes that draw nothing: 3 (invisible, a scanner's OCR layer) and 7 (clip only).
_UNDRAWN_MODES = (3, 7)


def _page_chars(page, width: int, height: int) -> tuple[Char, ...]:  # page: pdfium.PdfPage
    """The page's characters with their boxes in the pixels of its ``width`` x ``height`` render."""
    import ctypes

    import pypdfium2.raw as raw

    def device(x: float, y: float) -> tuple[int, int]:
        dx, dy = ctypes.c_int(), ctypes.c_int()
        raw.FPDF_PageToDevice(page.raw, 0, 0, width, height, 0, x, y, ctypes.byref(dx), ctypes.byref(dy))
        return dx.value, dy.value

    # Page space -> pixels is affine (PDFium's display matrix: crop box, /Rotate, scale), taken
    # from three points far apart, since PDFium rounds what it returns to whole pixels.
    o, ex, ey = device(0, 0), device(10_000, 0), device(0, 10_000)
    a, b = (ex[0] - o[0]) / 10_000, (ex[1] - o[1]) / 10_000
    c, d = (ey[0] - o[0]) / 10_000, (ey[1] - o[1]) / 10_000
    textpage = page.get_textpage()
    try:
        tp = textpage.raw
        left, right, bottom, top = (ctypes.c_double() for _ in range(4))
        chars = []
        for i in range(raw.FPDFText_CountChars(tp)):
            code = raw.FPDFText_GetUnicode(tp, i)
            generated = raw.FPDFText_IsGenerated(tp, i) == 1
            box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
            visible = True
            if not generated:
                raw.FPDFText_GetCharBox(
                    tp, i, ctypes.byref(left), ctypes.byref(right), ctypes.byref(bottom), ctypes.byref(top)
                )
                xs = [
                    o[0] + a * x + c * y for x in (left.value, right.value) for y in (bottom.value, top.value)
                ]
                ys = [
                    o[1] + b * x + d * y for x in (left.value, right.value) for y in (bottom.value, top.value)
                ]
                box = (min(xs), min(ys), max(xs), max(ys))
                obj = raw.FPDFText_GetTextObject(tp, i)
                visible = not obj or raw.FPDFTextObj_GetTextRenderMode(obj) not in _UNDRAWN_MODES
            # A lone surrogate cannot be sent as UTF-8: it stands for what it is, an unreadable code.
            text = "\ufffd" if not 0 <= code < 0x110000 or 0xD800 <= code < 0xE000 else chr(code)
            chars.append(Char(text, box, visible, generated))
        return tuple(chars)
    finally:
        textpage.close()


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
