from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from serve_app.config import LimitsArgs
from serve_app.documents import Document, parse_page_range, sniff
from serve_app.errors import (
    BadRequest,
    InvalidPageRange,
    PageTooLarge,
    PayloadTooLarge,
    TooManyPages,
    UnprocessableDocument,
    UnsupportedMediaType,
)
from tests.conftest import DATA

LIMITS = LimitsArgs()


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def page(color: tuple[int, int, int] = (10, 20, 30), size=(120, 80)) -> Image.Image:
    return Image.new("RGB", size, color)


@pytest.mark.parametrize(
    ("fmt", "kind"),
    [
        ("PNG", "png"),
        ("JPEG", "jpeg"),
        ("TIFF", "tiff"),
        ("WEBP", "webp"),
        ("BMP", "bmp"),
        ("PDF", "pdf"),
    ],
)
def test_every_format_decodes_to_rgb_pages(fmt: str, kind: str) -> None:
    data = encode(page(), fmt)
    doc = Document(data, LIMITS)
    assert doc.kind == kind
    assert doc.page_count == 1
    rendered = doc.render(0).image
    assert rendered.dtype == np.uint8 and rendered.ndim == 3 and rendered.shape[2] == 3
    if kind in ("png", "tiff", "bmp", "webp"):
        assert rendered.shape[:2] == (80, 120)
        assert [int(v) for v in rendered[40, 60]] == pytest.approx([10, 20, 30], abs=3)


def test_multipage_tiff_and_page_selection() -> None:
    frames = [page((i * 40, 0, 0)) for i in range(4)]
    data = encode(frames[0], "TIFF", save_all=True, append_images=frames[1:])
    doc = Document(data, LIMITS)
    assert doc.page_count == 4
    assert doc.select("2-3") == [1, 2]
    assert doc.render(2).image[0, 0, 0] == 80


def test_pdf_pages_render_at_requested_dpi() -> None:
    pdf = (DATA / "draft_federal_law_personal_data_p1.pdf").read_bytes()
    at_100 = Document(pdf, LIMITS, dpi=100).render(0).image
    at_200 = Document(pdf, LIMITS, dpi=200).render(0).image
    assert at_200.shape[0] == pytest.approx(2 * at_100.shape[0], abs=2)
    assert at_200.shape[0] == pytest.approx(2339, abs=2)  # A4 at 200 DPI


def test_transparent_png_becomes_white_paper() -> None:
    image = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    rendered = Document(encode(image, "PNG"), LIMITS).render(0).image
    assert rendered.min() == 255


def test_sixteen_bit_grayscale_is_scaled() -> None:
    arr = (np.arange(100, dtype=np.uint16).reshape(10, 10) * 600).astype(np.uint16)
    rendered = Document(encode(Image.fromarray(arr), "PNG"), LIMITS).render(0).image
    assert rendered.max() == 255 and rendered.min() == 0


@pytest.mark.parametrize(
    ("spec", "count", "expected"),
    [
        (None, 3, [0, 1, 2]),
        ("", 2, [0, 1]),
        ("1-3,5", 6, [0, 1, 2, 4]),
        ("2", 2, [1]),
        (" 3 - ", 4, [2, 3]),
        ("1,1,2", 3, [0, 1]),
    ],
)
def test_page_ranges(spec: str | None, count: int, expected: list[int]) -> None:
    assert parse_page_range(spec, count) == expected


@pytest.mark.parametrize("spec", ["0", "3-1", "a", "1-b", "5", "1-9", "-2"])
def test_bad_page_ranges(spec: str) -> None:
    with pytest.raises(InvalidPageRange):
        parse_page_range(spec, 4)


def test_upload_limit() -> None:
    with pytest.raises(PayloadTooLarge):
        Document(encode(page(), "PNG"), LimitsArgs(max_upload_bytes=100))


def test_page_limit() -> None:
    frames = [page() for _ in range(3)]
    data = encode(frames[0], "TIFF", save_all=True, append_images=frames[1:])
    doc = Document(data, LimitsArgs(max_pages=2))
    with pytest.raises(TooManyPages):
        doc.select(None)
    assert doc.select("1-2") == [0, 1]


def test_pixel_limit_is_checked_before_decoding() -> None:
    huge = encode(Image.new("1", (20000, 20000)), "PNG")  # 400 Mpx, a few kB compressed
    doc = Document(huge, LIMITS)
    with pytest.raises(PageTooLarge):
        doc.select(None)


def test_pdf_pixel_limit_depends_on_dpi() -> None:
    pdf = (DATA / "draft_federal_law_personal_data_p1.pdf").read_bytes()
    limits = LimitsArgs(max_page_pixels=5_000_000)
    assert Document(pdf, limits, dpi=150).select(None) == [0]
    with pytest.raises(PageTooLarge):
        Document(pdf, limits, dpi=300).select(None)


@pytest.mark.parametrize("dpi", [10, 5000])
def test_dpi_out_of_range(dpi: int) -> None:
    pdf = (DATA / "draft_federal_law_personal_data_p1.pdf").read_bytes()
    with pytest.raises(BadRequest, match="dpi"):
        Document(pdf, LIMITS, dpi=dpi)


def test_unsupported_type() -> None:
    with pytest.raises(UnsupportedMediaType):
        sniff(b"hello, this is text")
    with pytest.raises(UnsupportedMediaType):
        Document(encode(page(), "GIF"), LIMITS)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"%PDF-1.7\n this is not a pdf at all",
        encode(page(), "PNG")[:60],  # header intact, pixels cut off
        b"\xff\xd8\xff\xe0" + b"\x00" * 50,
    ],
)
def test_corrupt_documents_are_unprocessable(data: bytes) -> None:
    """Any decoder failure is a 422, never a 500 (fuzzed bytes raise TypeError, KeyError...)."""
    with pytest.raises(UnprocessableDocument):
        doc = Document(data, LIMITS)
        doc.select(None)
        doc.render(0)


def test_fuzzed_images_never_escape_as_other_errors() -> None:
    rng = np.random.default_rng(0)
    frames = [page((i * 40, 0, 0)) for i in range(3)]
    originals = [
        encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
        encode(page(), "PNG"),
        encode(page(), "WEBP"),
    ]
    for original in originals:
        for _ in range(60):
            data = bytearray(original)
            for pos in rng.integers(8, len(data), size=int(rng.integers(1, 6))):
                data[pos] = int(rng.integers(0, 256))
            try:
                doc = Document(bytes(data), LIMITS)
                for i in doc.select(None):
                    doc.render(i)
            except (UnprocessableDocument, UnsupportedMediaType, PageTooLarge):
                pass


def test_pdf_with_a_page_tree_that_lies_is_unprocessable() -> None:
    data = (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 5>>endobj\n"
        b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\n"
        b"trailer<</Root 1 0 R>>\n%%EOF"
    )
    with pytest.raises(UnprocessableDocument):
        doc = Document(data, LIMITS)
        for i in doc.select(None):
            doc.render(i)
