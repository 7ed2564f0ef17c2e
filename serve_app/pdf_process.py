"""PDFium in a process of its own, under a memory ceiling (``limits.pdf_memory_bytes``).

A PDF is a program: its streams can inflate past any bound (LZW, RunLength, inline images and
encrypted streams are beyond what ``pdf_streams`` measures) and PDFium has crashed on crafted files
before. So PDFs are opened and rendered in a child process whose address space is capped: a PDF
that needs more, or crashes PDFium, ends that child, not the replica; its request gets a 422, and
the next PDF gets a new child. Documents other requests had open there are opened again in the new
one (the parent keeps their bytes), so one bad file fails only itself.

The child runs ``python -m serve_app.pdf_process BYTES PARENT_PID``: it reads the parent's pickled
requests on its stdin and answers each on its stdout as checked frames (JSON, and a page's raw
pixels), one at a time: PDFium is not thread-safe, so one process serialises what the old
process-wide lock did. Only this module's parent side is imported by the service.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from .errors import UnprocessableDocument, unreadable
from .text_layer import Char

logger = logging.getLogger("ray.serve.serve_app.pdf_process")

_HEADER = struct.Struct("!Q")


def _send(stream: IO[bytes], message: Any) -> None:
    """A request to the child: the parent's own values, pickled (the child trusts its parent)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


Rendered = tuple[np.ndarray, tuple[Char, ...]]  # a page's image and (when asked) its characters
ANSWER_CAP = 256 << 20  # the most an answer's JSON part may claim to be (a page's characters)
# What the child is given of this process's environment: enough to run Python, nothing secret (API
# keys, S3 credentials); one thread each for the maths libraries, whose arenas count in its ceiling.
CHILD_ENV = ("PATH", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "LANG", "LC_ALL", "TMPDIR")
CHILD_THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
# A page's buffers (a 200 DPI page: 15 MB of BGRA, 12 MB of RGB twice) kept on malloc's heap and
# used again, not mapped anew and faulted in page by page for every render: 48 -> 20 ms a page
# through the process (bench.pdf_process). What is freed stays up to 256 MiB; the ceiling bounds it.
CHILD_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(256 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


@dataclass(frozen=True)
class Opened:
    page_count: int
    sizes: tuple[tuple[float, float], ...]  # each page's (width, height) in points


class _Lost(Exception):
    """The child died, hung past its deadline, ran out of memory or answered nonsense."""

    def __init__(self, why: str, again: bool) -> None:
        super().__init__(why)
        self.why, self.again = why, again  # again: worth one more go in a new child


class PdfProcess:
    """The parent's side: a child started on first use and again after it is lost."""

    def __init__(self, memory_bytes: int, timeout_s: float = 60.0) -> None:
        self.memory_bytes, self.timeout_s = memory_bytes, timeout_s
        self.lock = threading.Lock()  # one request at a time: PDFium is not thread-safe
        self._child: subprocess.Popen[bytes] | None = None
        self._generation = 0  # which child a document was opened in
        self._ids = itertools.count()

    def open(self, data: bytes) -> PdfHandle:
        handle = PdfHandle(self, next(self._ids), data)
        handle.opened = Opened(*self._call(handle, "open", data))
        return handle

    def _call(self, handle: PdfHandle, op: str, *args: Any) -> Any:
        """``op`` on ``handle``'s document in the current child (opened there first if it was
        opened in a child lost since). A child lost on it gets one more go in a new child, with
        only this document open: what took the first may have been the others' memory."""
        with self.lock:
            for attempt in (1, 2):
                child = self._running()
                try:
                    if op != "open" and handle.generation != self._generation:
                        if op == "close":
                            return None  # nothing of it is left in this child
                        self._exchange(child, "open", handle.id, handle.data)
                    result = self._exchange(child, op, handle.id, *args)
                    handle.generation = self._generation
                    return result
                except _Lost as lost:
                    self._end(f"{lost.why} during {op}")
                    if attempt == 2 or not lost.again:
                        raise UnprocessableDocument(
                            f"this PDF {lost.why} (limits.pdf_memory_bytes {self.memory_bytes >> 20} MiB, "
                            f"limits.pdf_timeout_s {self.timeout_s:g} s)"
                        ) from None
            raise AssertionError("unreachable")

    def _exchange(self, child: subprocess.Popen[bytes], op: str, doc_id: int, *args: Any) -> Any:
        assert child.stdin is not None and child.stdout is not None
        deadline = time.monotonic() + self.timeout_s
        try:  # the request is ours, pickled; the answer is the child's, framed and checked
            _send(child.stdin, (op, doc_id, args))
            head = json.loads(_read(child.stdout, _length(child.stdout, deadline, ANSWER_CAP), deadline))
            if not head["ok"]:
                if head.get("memory"):
                    raise _Lost(f"needed more memory than the PDF process has: {head['error']}", True)
                raise UnprocessableDocument(str(head["error"]))
            if op != "render":
                return head["value"]
            height, width = int(head["shape"][0]), int(head["shape"][1])
            size = _length(child.stdout, deadline, self.memory_bytes)
            if height < 1 or width < 1 or size != height * width * 3:
                raise _Lost("was answered with an image of the wrong size", False)
            image = np.frombuffer(_read(child.stdout, size, deadline), np.uint8).reshape(height, width, 3)
            chars = tuple(
                Char(str(t), (x0, y0, x1, y1), bool(v), bool(g)) for t, x0, y0, x1, y1, v, g in head["chars"]
            )
            return image, chars
        except TimeoutError:
            raise _Lost(f"was not read within {self.timeout_s:g} s", False) from None
        except (EOFError, OSError) as exc:
            raise _Lost(f"ended the PDF process ({exc})", True) from None
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise _Lost(f"was answered with nonsense ({type(exc).__name__})", False) from None

    def _running(self) -> subprocess.Popen[bytes]:
        if self._child is None or self._child.poll() is not None:
            env = {k: v for k, v in os.environ.items() if k in CHILD_ENV} | CHILD_THREADS | CHILD_MALLOC
            self._child = subprocess.Popen(
                [sys.executable, "-m", "serve_app.pdf_process", str(self.memory_bytes), str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
            self._generation += 1
        return self._child

    def _end(self, why: str | None = None) -> None:
        """The child killed (if it still runs) and waited for; ``why`` is logged."""
        if self._child is not None:
            self._child.kill()
            code = self._child.wait()
            self._child = None
            if why is not None:
                logger.warning(
                    "PDF process ended (exit %s): a PDF %s; the next PDF starts another", code, why
                )

    def stop(self) -> None:
        with self.lock:
            self._end()


def _length(stream: IO[bytes], deadline: float, cap: int) -> int:
    size = int(_HEADER.unpack(_read(stream, _HEADER.size, deadline))[0])
    if size > cap:
        raise ValueError(f"an answer of {size} bytes")
    return size


def _read(stream: IO[bytes], size: int, deadline: float) -> bytearray:
    """Exactly ``size`` bytes from the child's pipe by ``deadline`` (TimeoutError), or EOFError."""
    fd = stream.fileno()
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError
        chunk = os.readv(fd, [view[got : got + (1 << 22)]])
        if chunk == 0:
            raise EOFError("the PDF process has gone")
        got += chunk
    return buffer


class PdfHandle:
    """One open PDF in the child (opened again there if a child was lost meanwhile)."""

    def __init__(self, process: PdfProcess, id: int, data: bytes) -> None:
        self.process, self.id, self.data = process, id, data
        self.generation = 0
        self.opened = Opened(0, ())

    def render(self, index: int, scale: float, text_layer: bool) -> Rendered:
        image, chars = self.process._call(self, "render", index, scale, text_layer)
        return image, chars

    def close(self) -> None:
        self.process._call(self, "close")


_processes: dict[tuple[int, float], PdfProcess] = {}
_processes_lock = threading.Lock()


def pdf_process(memory_bytes: int, timeout_s: float) -> PdfProcess:
    """This replica's PDF process for those limits (one per limits: in practice, one)."""
    with _processes_lock:
        if (memory_bytes, timeout_s) not in _processes:
            _processes[memory_bytes, timeout_s] = PdfProcess(memory_bytes, timeout_s)
        return _processes[memory_bytes, timeout_s]


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


def _serve(memory_bytes: int, parent: int) -> None:
    import ctypes
    import resource
    import signal

    import pypdfium2 as pdfium

    with contextlib.suppress(OSError, AttributeError):  # Linux: ends with the replica, even one killed
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        return
    # A blank page read first, so that every library a page needs is loaded before the ceiling.
    blank = pdfium.PdfDocument.new()
    blank.new_page(72, 72)
    _page_chars(blank[0], 1, 1)
    _rendered(blank[0], 1.0, 0)
    blank.close()
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    # The answers go on a copy of fd 1; fd 1 itself becomes stderr, so that nothing printed (by
    # Python or by PDFium's C code) can fall into them.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    requests = sys.stdin.buffer
    documents: dict[int, Any] = {}

    def open_(doc_id: int, data: bytes) -> list[Any]:
        with unreadable("the document cannot be opened"):
            pdf = documents[doc_id] = pdfium.PdfDocument(data)
            return [len(pdf), [list(pdf.get_page_size(i)) for i in range(len(pdf))]]

    def render(doc_id: int, index: int, scale: float, text_layer: bool) -> None:
        with unreadable(f"page {index + 1} of the PDF cannot be read"):
            page = documents[doc_id][index]
        try:
            image = _rendered(page, scale, index)
            chars = _page_chars_or_none(page, index, image.shape[1], image.shape[0]) if text_layer else ()
        finally:
            page.close()
        rows = [[c.text, *c.box, c.visible, c.generated] for c in chars]
        _write(answers, json.dumps({"ok": True, "shape": image.shape, "chars": rows}).encode(), image.data)

    def close(doc_id: int) -> None:
        pdf = documents.pop(doc_id, None)
        if pdf is not None:
            pdf.close()

    ops: dict[str, Callable[..., Any]] = {"open": open_, "render": render, "close": close}
    while True:
        head = requests.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return  # the parent has gone
        op, doc_id, args = pickle.loads(requests.read(_HEADER.unpack(head)[0]))  # the parent's own
        answer: dict[str, Any]
        try:
            value = ops[op](doc_id, *args)
            if op == "render":
                continue  # answered as it went
            answer = {"ok": True, "value": value}
        except UnprocessableDocument as exc:
            answer = {"ok": False, "error": exc.detail, "memory": "MemoryError" in exc.detail}
        except MemoryError:
            answer = {"ok": False, "error": "MemoryError", "memory": True}
        except Exception as exc:
            answer = {"ok": False, "error": f"the PDF cannot be read: {type(exc).__name__}: {exc}"}
        _write(answers, json.dumps(answer).encode())


def _write(stream: IO[bytes], *parts: bytes | memoryview) -> None:
    for part in parts:
        stream.write(_HEADER.pack(len(part) if isinstance(part, bytes) else part.nbytes))
        stream.write(part)
    stream.flush()


if __name__ == "__main__":
    # Through the package, not as __main__: one module, one set of names.
    from serve_app.pdf_process import _serve as serve

    serve(int(sys.argv[1]), int(sys.argv[2]))
