"""PDFium in its own process under a memory ceiling (serve_app/pdf_process.py): a PDF that needs
more memory than the ceiling fails alone, with a 422's error, and every other open document goes on
reading, in a new process if the old one died."""

from __future__ import annotations

import signal

import pytest

from serve_app.errors import UnprocessableDocument
from serve_app.pdf_process import PdfProcess
from tests.conftest import DATA

LAW = (DATA / "draft_federal_law_personal_data_p1.pdf").read_bytes()
CEILING = 512 << 20


@pytest.fixture
def process():
    running = PdfProcess(CEILING)
    yield running
    running.stop()


def test_pages_and_their_text_come_back_from_the_process(process: PdfProcess) -> None:
    law = process.open(LAW)
    assert law.opened.page_count == 1 and law.opened.sizes[0] == pytest.approx((595.3, 841.9), abs=1)
    image, chars = law.render(0, 100 / 72, True)
    assert image.shape == (1170, 827, 3) and image.dtype.name == "uint8"
    assert "Федеральным законом" in "".join(c.text for c in chars)
    assert law.render(0, 100 / 72, False)[1] == ()  # characters only when asked for
    law.close()


def test_a_render_past_the_ceiling_fails_alone(process: PdfProcess) -> None:
    other = process.open(LAW)
    hog = process.open(LAW)
    with pytest.raises(UnprocessableDocument) as failed:
        hog.render(0, 12.0, False)  # 7144 x 10103 pixels: over 0.8 GB through PDFium, PIL and numpy
    assert "512 MiB" in failed.value.detail or "MemoryError" in failed.value.detail
    image, _ = other.render(0, 100 / 72, False)  # the other document reads on, whatever became of the process
    assert image.shape == (1170, 827, 3)
    roomy = PdfProcess(4 << 30)  # the same render with room for it: it was the ceiling that stopped it
    try:
        assert roomy.open(LAW).render(0, 12.0, False)[0].shape == (10103, 7144, 3)
    finally:
        roomy.stop()


def test_a_process_that_dies_is_replaced_and_its_documents_opened_again(process: PdfProcess) -> None:
    law = process.open(LAW)
    first = process._running()
    first.send_signal(signal.SIGKILL)  # as PDFium crashing on a crafted file ends it
    first.wait()
    image, chars = law.render(0, 100 / 72, True)
    assert image.shape == (1170, 827, 3) and chars
    assert process._running().pid != first.pid


def test_a_step_past_its_deadline_ends_the_process_and_fails_alone(process: PdfProcess) -> None:
    law = process.open(LAW)
    hurried = PdfProcess(CEILING, timeout_s=1e-6)
    try:
        with pytest.raises(UnprocessableDocument, match="was not read within"):
            hurried.open(LAW)
        assert hurried._child is None  # killed, not left running
    finally:
        hurried.stop()
    assert law.render(0, 1.0, False)[0].shape[2] == 3


def test_the_process_gets_no_secrets_and_one_thread_per_maths_library(
    process: PdfProcess, monkeypatch
) -> None:
    monkeypatch.setenv("SERVE_APP_AUTH__API_KEYS", "a-secret-key-0123456789")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "another-secret")
    process.stop()
    process.open(LAW)
    with open(f"/proc/{process._running().pid}/environ", "rb") as given:
        environ = given.read().split(b"\0")
    assert not any(b"secret" in v for v in environ)
    assert b"OPENBLAS_NUM_THREADS=1" in environ and b"MALLOC_ARENA_MAX=2" in environ


def test_a_broken_pdf_is_a_readable_error_and_the_process_lives_on(process: PdfProcess) -> None:
    with pytest.raises(UnprocessableDocument, match="the document cannot be opened"):
        process.open(LAW[: len(LAW) // 3])
    assert process.open(LAW).render(0, 1.0, False)[0].shape[2] == 3
