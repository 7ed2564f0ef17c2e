"""PDF decompression bombs are refused before PDFium inflates them; real PDFs pass."""

from __future__ import annotations

import base64
import binascii
import zlib
from pathlib import Path

import pytest

from serve_app.config import LimitsArgs
from serve_app.documents import Document
from serve_app.errors import PayloadTooLarge, UnprocessableDocument
from serve_app.pdf_streams import check_streams
from tests.conftest import DATA

MIB = 1024 * 1024
REAL_PDFS = sorted(DATA.glob("*.pdf")) + sorted((DATA.parent / "layers").glob("*.pdf"))


def pdf(*streams: tuple[bytes, str], keyword: bytes = b"stream\n") -> bytes:
    """A one-page PDF whose page draws ``streams`` (content bytes as stored, and their /Filter)."""
    count = len(streams)
    contents = " ".join(f"{4 + i} 0 R" for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents [{contents}] >>".encode(),
        *(
            f"<< /Length {len(data)} /Filter {filters} >>\n".encode() + keyword + data + b"\nendstream"
            for data, filters in streams
        ),
    ]
    out, offsets = bytearray(b"%PDF-1.5\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def spaces(n: int) -> bytes:
    """``n`` bytes of a valid content stream (blanks) deflated: about a thousandth of ``n``."""
    inflater = zlib.compressobj(9)
    block = b" " * MIB
    return b"".join(inflater.compress(block) for _ in range(n // MIB)) + inflater.flush()


def limits(stream_mib: int, total_mib: int) -> LimitsArgs:
    return LimitsArgs(max_pdf_stream_bytes=stream_mib * MIB, max_pdf_inflated_bytes=total_mib * MIB)


def test_a_stream_that_inflates_past_its_limit_is_refused_before_pdfium_opens_it() -> None:
    bomb = pdf((spaces(64 * MIB), "/FlateDecode"))
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLarge, match="max_pdf_stream_bytes"):
        Document(bomb, limits(16, 1024))
    Document(bomb, limits(128, 1024)).close()  # under the limits the same file opens


def test_a_bomb_inside_a_second_flate_layer_is_measured_at_its_inner_size() -> None:
    twice = zlib.compress(spaces(64 * MIB), 9)
    assert len(twice) < 1 * MIB
    with pytest.raises(PayloadTooLarge, match="max_pdf_stream_bytes"):
        check_streams(pdf((twice, "[/FlateDecode /FlateDecode]")), 16 * MIB, 1024 * MIB)


@pytest.mark.parametrize(
    "keyword, stored, filters",
    [
        (b"stream \n", lambda z: z, "/FlateDecode"),  # PDFium reads on from the next line
        (b"stream % note\r\n", lambda z: z, "/FlateDecode"),
        (b"stream\n", lambda z: binascii.hexlify(z) + b">", "[/ASCIIHexDecode /FlateDecode]"),
        (b"stream\n", lambda z: base64.a85encode(z) + b"~>", "[/A85 /Fl]"),
        (b"stream\n", lambda z: z[:-1] + bytes([z[-1] ^ 1]), "/FlateDecode"),  # a bad checksum
    ],
)
def test_bombs_in_the_other_shapes_pdfium_reads_are_refused(keyword: bytes, stored, filters: str) -> None:
    with pytest.raises(PayloadTooLarge, match="max_pdf_stream_bytes"):
        check_streams(pdf((stored(spaces(64 * MIB)), filters), keyword=keyword), 16 * MIB, 1024 * MIB)


def test_a_file_whose_streams_overlap_is_refused_at_once() -> None:
    """Each keyword opens a zlib stream of empty stored blocks whose last block holds the next
    keyword: every one runs to the end of the file, so 50 MiB would take minutes to scan."""
    period = b"stream\n\x78\x01" + b"\x00\x00\x00\xff\xff" * 600 + b"\x00\x09\x00\xf6\xff"
    with pytest.raises(UnprocessableDocument, match="overlap"):
        check_streams(b"%PDF-1.7\n" + period * 3000, 256 * MIB, 2048 * MIB)


def test_many_streams_under_their_limit_are_refused_together() -> None:
    many = pdf(*[(spaces(8 * MIB), "/FlateDecode")] * 5)
    check_streams(many, 16 * MIB, 64 * MIB)
    with pytest.raises(PayloadTooLarge, match="max_pdf_inflated_bytes"):
        check_streams(many, 16 * MIB, 32 * MIB)


def test_streams_that_are_not_zlib_are_not_counted() -> None:
    jpeg_like = bytes(range(256)) * 4000
    check_streams(pdf((jpeg_like, "/DCTDecode"), (b"garbage" * 1000, "/FlateDecode")), MIB, MIB)


@pytest.mark.parametrize("path", REAL_PDFS, ids=lambda p: Path(p).name)
def test_real_pdfs_pass_the_default_limits(path: Path) -> None:
    data = path.read_bytes()
    check_streams(data, LimitsArgs().max_pdf_stream_bytes, LimitsArgs().max_pdf_inflated_bytes)
    if b"/FlateDecode" in data:  # and their streams were found and measured
        with pytest.raises(PayloadTooLarge, match="max_pdf_inflated_bytes"):
            check_streams(data, MIB, 1)
