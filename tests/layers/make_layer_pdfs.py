"""Writes the PDFs with broken text layers that tests/layers holds (run by hand; the files are
committed, so that tests need neither this script nor fontTools):

- ``layer_cp1251_no_tounicode.pdf``: Russian text in a Cyrillic TrueType font (DejaVu Sans,
  Bitstream Vera licence) whose glyphs sit at the Windows-1251 codes of a font declared
  WinAnsiEncoding, with no ToUnicode map: the page shows Russian, its text layer says
  "Ïðèêàç". Old Russian PDFs made with "Cyr" fonts look like this.
- ``layer_hidden_text.pdf``: English lines that are shown, and three that are not: one in white,
  one in render mode 3 (invisible, as a scanner's OCR layer), one off the page.
- ``layer_private_use.pdf``: English lines shown, and a ToUnicode map that sends every code to the
  private-use area (U+E000 + code), as symbol fonts and some PDF producers' subset fonts do.

    .venv/bin/python tests/layers/make_layer_pdfs.py
"""

from __future__ import annotations

import io
import zlib
from pathlib import Path

HERE = Path(__file__).parent
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

RUSSIAN = [
    "ПРИКАЗ № 17",
    "Об утверждении порядка хранения документов",
    "1. Утвердить прилагаемый порядок хранения документов.",
    "2. Руководителям подразделений обеспечить его исполнение.",
    "3. Контроль за исполнением приказа оставляю за собой.",
    "Директор                                   И. И. Иванов",
]
SHOWN = [
    "Minutes of the meeting of the board",
    "The board approved the budget for the next year.",
    "The next meeting will be held in March.",
]
HIDDEN = {
    "white": "WHITE WORDS NOBODY CAN SEE",
    "invisible": "INVISIBLE LAYER WORDS",
    "off_page": "WORDS OUTSIDE THE PAGE",
}


def _pdf(objects: list[bytes]) -> bytes:
    """A PDF of these objects (1-based, the first the catalog), with its cross-reference table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % n + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    packed = zlib.compress(data)
    return (
        b"<< /Length %d /Filter /FlateDecode %s>>\nstream\n" % (len(packed), extra) + packed + b"\nendstream"
    )


def _literal(raw: bytes) -> bytes:
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def cp1251_font() -> tuple[bytes, list[int]]:
    """DejaVu Sans subset whose cmap puts each Cyrillic glyph at the WinAnsi character of its
    Windows-1251 byte; and the widths of codes 32..255 in PDF units."""
    from fontTools import subset
    from fontTools.ttLib import TTFont

    font = TTFont(str(DEJAVU))
    cmap = font.getBestCmap()
    used = sorted(set("".join(RUSSIAN)))
    remapped: dict[int, str] = {}
    for ch in used:
        code = ch.encode("cp1251")[0]
        remapped[ord(bytes([code]).decode("cp1252"))] = cmap[ord(ch)]
    for table in font["cmap"].tables:
        if table.isUnicode():
            table.cmap = remapped
    options = subset.Options()
    options.notdef_outline = True
    options.name_IDs = ["*"]
    sub = subset.Subsetter(options)
    sub.populate(unicodes=list(remapped))
    sub.subset(font)
    data = io.BytesIO()
    font.save(data)
    scale = 1000 / font["head"].unitsPerEm
    hmtx, best = font["hmtx"], font.getBestCmap()
    widths = [
        round(hmtx[best[ord(bytes([c]).decode("cp1252", errors="replace"))]][0] * scale)
        if ord(bytes([c]).decode("cp1252", errors="replace")) in best
        else 0
        for c in range(32, 256)
    ]
    return data.getvalue(), widths


def cp1251_pdf() -> bytes:
    font, widths = cp1251_font()
    lines = b"".join(b"%s Tj T*\n" % _literal(line.encode("cp1251")) for line in RUSSIAN)
    content = b"BT /F1 14 Tf 18 TL 72 760 Td\n" + lines + b"ET\n"
    descriptor = (
        b"<< /Type /FontDescriptor /FontName /AAAAAA+DejaVuSans /Flags 32 /FontBBox [-1021 -463 1793 1232]"
        b" /ItalicAngle 0 /Ascent 928 /Descent -236 /CapHeight 729 /StemV 80 /FontFile2 6 0 R >>"
    )
    return _pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 7 0 R"
            b" /Resources << /Font << /F1 4 0 R >> >> >>",
            b"<< /Type /Font /Subtype /TrueType /BaseFont /AAAAAA+DejaVuSans /FirstChar 32 /LastChar 255"
            b" /Widths [" + b" ".join(b"%d" % w for w in widths) + b"] /Encoding /WinAnsiEncoding"
            b" /FontDescriptor 5 0 R >>",
            descriptor,
            _stream(font, b"/Length1 %d " % len(font)),
            _stream(content),
        ]
    )


def hidden_text_pdf() -> bytes:
    shown = b"".join(b"%s Tj T*\n" % _literal(line.encode()) for line in SHOWN)
    content = (
        b"BT /F1 14 Tf 20 TL 72 760 Td\n" + shown + b"ET\n"
        # In white, between the shown lines' paragraph and the next.
        b"1 1 1 rg BT /F1 14 Tf 72 690 Td " + _literal(HIDDEN["white"].encode()) + b" Tj ET 0 g\n"
        b"BT 3 Tr /F1 14 Tf 72 660 Td " + _literal(HIDDEN["invisible"].encode()) + b" Tj ET\n"
        b"BT /F1 14 Tf -700 400 Td " + _literal(HIDDEN["off_page"].encode()) + b" Tj ET\n"
    )
    return _pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 5 0 R"
            b" /Resources << /Font << /F1 4 0 R >> >> >>",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
            _stream(content),
        ]
    )


def private_use_pdf() -> bytes:
    shown = b"".join(b"%s Tj T*\n" % _literal(line.encode()) for line in SHOWN)
    content = b"BT /F1 14 Tf 20 TL 72 760 Td\n" + shown + b"ET\n"
    cmap = (
        b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n"
        b"/CMapName /PrivateUse def /CMapType 2 def\n"
        b"1 begincodespacerange <00> <FF> endcodespacerange\n"
        b"1 beginbfrange <20> <7E> <E020> endbfrange\n"
        b"endcmap CMapName currentdict /CMap defineresource pop end end\n"
    )
    return _pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 5 0 R"
            b" /Resources << /Font << /F1 4 0 R >> >> >>",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding"
            b" /ToUnicode 6 0 R >>",
            _stream(content),
            _stream(cmap),
        ]
    )


def main() -> None:
    (HERE / "layer_cp1251_no_tounicode.pdf").write_bytes(cp1251_pdf())
    (HERE / "layer_cp1251_no_tounicode.gt.txt").write_text("\n".join(RUSSIAN) + "\n")
    (HERE / "layer_hidden_text.pdf").write_bytes(hidden_text_pdf())
    (HERE / "layer_hidden_text.gt.txt").write_text("\n".join(SHOWN) + "\n")
    (HERE / "layer_private_use.pdf").write_bytes(private_use_pdf())
    (HERE / "layer_private_use.gt.txt").write_text("\n".join(SHOWN) + "\n")


if __name__ == "__main__":
    main()
