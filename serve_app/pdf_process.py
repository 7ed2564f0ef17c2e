"""PDFium in a process of its own, under a memory ceiling (``limits.pdf_memory_bytes``).

A PDF is a program: its streams can inflate past any bound (LZW, RunLength, inline images and
encrypted streams are beyond what ``pdf_streams`` measures) and PDFium has crashed on crafted files
before. So PDFs are opened and rendered in a child process whose address space is capped: a PDF
that needs more, or crashes PDFium, ends that child, not the replica; its request gets a 422, and
the next PDF gets a new child. Documents other requests had open there are opened again in the new
one (the parent keeps their bytes), so one bad file fails only itself.

The child runs ``python -m serve_app.pdf_process BYTES`` and answers pickled requests on its stdin
and stdout, one at a time: PDFium is not thread-safe, so one process serialises what the old
process-wide lock did. Only this module's parent side is imported by the service.
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from .errors import UnprocessableDocument, unreadable
from .text_layer import Char

logger = logging.getLogger("ray.serve.serve_app.pdf_process")

_HEADER = struct.Struct("!Q")
Rendered = tuple[np.ndarray, tuple[Char, ...]]  # a page's image and (when asked) its characters


def _send(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError("the PDF process has gone")
    size = _HEADER.unpack(head)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the PDF process has gone")
    return pickle.loads(data)


@dataclass(frozen=True)
class Opened:
    page_count: int
    sizes: tuple[tuple[float, float], ...]  # each page's (width, height) in points


class PdfProcess:
    """The parent's side: a child started on first use and again after it dies."""

    def __init__(self, memory_bytes: int) -> None:
        self.memory_bytes = memory_bytes
        self.lock = threading.Lock()  # one request at a time: PDFium is not thread-safe
        self._child: subprocess.Popen[bytes] | None = None
        self._generation = 0  # which child a document was opened in
        self._ids = itertools.count()

    def open(self, data: bytes) -> PdfHandle:
        handle = PdfHandle(self, next(self._ids), data)
        handle.opened = self._call(handle, "open", data)
        return handle

    def _call(self, handle: PdfHandle, op: str, *args: Any) -> Any:
        """``op`` on ``handle``'s document in the current child, opening it there first if it was
        opened in a child that has died since."""
        with self.lock:
            child = self._running()
            if op != "open" and handle.generation != self._generation:
                if op == "close":
                    return None  # nothing of it is left in this child
                self._exchange(child, handle, "open", handle.data)
            result = self._exchange(child, handle, op, *args)
            handle.generation = self._generation
            return result

    def _exchange(self, child: subprocess.Popen[bytes], handle: PdfHandle, op: str, *args: Any) -> Any:
        assert child.stdin is not None and child.stdout is not None
        try:
            _send(child.stdin, (op, handle.id, args))
            ok, value = _receive(child.stdout)
        except (EOFError, OSError, pickle.UnpicklingError):
            code = child.wait()
            self._child = None
            logger.warning(
                "the PDF process ended (exit %s) during %s; a new one starts with the next PDF", code, op
            )
            raise UnprocessableDocument(
                f"this PDF could not be read within {self.memory_bytes >> 20} MiB of memory "
                "(limits.pdf_memory_bytes), or it made the PDF reader fail"
            ) from None
        if not ok:
            raise UnprocessableDocument(value)
        return value

    def _running(self) -> subprocess.Popen[bytes]:
        if self._child is None or self._child.poll() is not None:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "serve_app.pdf_process", str(self.memory_bytes)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            self._generation += 1
        return self._child

    def stop(self) -> None:
        with self.lock:
            if self._child is not None:
                self._child.kill()
                self._child.wait()
                self._child = None


class PdfHandle:
    """One open PDF in the child (opened again there if a child died meanwhile)."""

    def __init__(self, process: PdfProcess, id: int, data: bytes) -> None:
        self.process, self.id, self.data = process, id, data
        self.generation = 0
        self.opened = Opened(0, ())

    def render(self, index: int, scale: float, text_layer: bool) -> Rendered:
        image, chars = self.process._call(self, "render", index, scale, text_layer)
        return image, chars

    def close(self) -> None:
        self.process._call(self, "close")


_processes: dict[int, PdfProcess] = {}
_processes_lock = threading.Lock()


def pdf_process(memory_bytes: int) -> PdfProcess:
    """This replica's PDF process for that ceiling (one per ceiling: in practice, one)."""
    with _processes_lock:
        if memory_bytes not in _processes:
            _processes[memory_bytes] = PdfProcess(memory_bytes)
        return _processes[memory_bytes]


# ---- the child ------------------------------------------------------------------------------


def _rendered(page, scale: float, index: int) -> np.ndarray:  # page: pdfium.PdfPage
    with unreadable(f"page {index + 1} of the PDF cannot be rendered"):
        pil = page.render(scale=scale).to_pil()
        return np.ascontiguousarray(pil.convert("RGB"))


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


def _serve(memory_bytes: int) -> None:
    import resource

    import pypdfium2 as pdfium

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    documents: dict[int, Any] = {}

    def open_(doc_id: int, data: bytes) -> Opened:
        with unreadable("the document cannot be opened"):
            pdf = documents[doc_id] = pdfium.PdfDocument(data)
            return Opened(len(pdf), tuple(pdf.get_page_size(i) for i in range(len(pdf))))

    def render(doc_id: int, index: int, scale: float, text_layer: bool) -> Rendered:
        with unreadable(f"page {index + 1} of the PDF cannot be read"):
            page = documents[doc_id][index]
        try:
            image = _rendered(page, scale, index)
            chars = _page_chars_or_none(page, index, image.shape[1], image.shape[0]) if text_layer else ()
            return image, chars
        finally:
            page.close()

    def close(doc_id: int) -> None:
        pdf = documents.pop(doc_id, None)
        if pdf is not None:
            pdf.close()

    ops: dict[str, Callable[..., Any]] = {"open": open_, "render": render, "close": close}
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything printed goes to the log, not into the answers
    while True:
        try:
            op, doc_id, args = _receive(stdin)
        except EOFError:
            return  # the parent has gone
        try:
            answer = (True, ops[op](doc_id, *args))
        except UnprocessableDocument as exc:
            answer = (False, exc.detail)
        except MemoryError:
            answer = (False, f"this PDF needs more than {memory_bytes >> 20} MiB of memory to read")
        except Exception as exc:
            answer = (False, f"the PDF cannot be read: {type(exc).__name__}: {exc}")
        _send(stdout, answer)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Through the package, not __main__: what it answers must unpickle as serve_app's classes.
    from serve_app.pdf_process import _serve as serve

    serve(int(sys.argv[1]))
