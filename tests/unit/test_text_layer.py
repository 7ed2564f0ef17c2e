"""A PDF's text layer: read where it can be trusted, OCR'd where it cannot, on real files of each
kind (tests/layers/README.md) through the real CPU engines, and the rules on their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.textmetrics import cer
from serve_app import text_layer
from serve_app.assemble import page_text
from serve_app.documents import Document
from serve_app.pipeline import Options, process_document
from serve_app.text_layer import Char
from tests.conftest import DATA
from tests.unit.engines_fixture import CountingRecognizer

LAYERS = DATA.parent / "layers"  # a PDF of each kind of text layer (tests/layers/README.md)


async def read(
    engines, name: str, mode: str = "auto", dpi: int = 200, ocr_tasks: frozenset[str] = frozenset()
):
    from serve_app.config import LimitsArgs
    from serve_app.local import LocalLayout

    layout, recognizer = engines
    counting = CountingRecognizer(recognizer)
    doc = Document((DATA / name).read_bytes(), LimitsArgs(), dpi)  # a Path stays itself
    try:
        pages = await process_document(
            doc,
            doc.select(None),
            Options(text_layer=mode, ocr_tasks=ocr_tasks),
            LocalLayout(layout),
            counting,
            1,
        )
    finally:
        doc.close()
    return pages, counting.calls


def truth(name: str | Path) -> str:
    return (DATA / name).with_suffix(".gt.txt").read_text()


async def test_a_born_digital_page_is_read_from_its_layer_exactly_without_the_recognizer(engines) -> None:
    name = "draft_federal_law_personal_data_p1.pdf"
    pages, calls = await read(engines, name)
    assert {b.source for b in pages[0].blocks} == {"text_layer"}
    assert calls == 0
    assert cer(page_text(pages[0]), truth(name)) < 0.01
    # The layout still runs: the blocks keep its labels.
    assert len(pages[0].blocks) > 3 and {b.label for b in pages[0].blocks} - {"text"}


async def test_off_ocrs_the_page_as_before(engines) -> None:
    pages, calls = await read(engines, "draft_federal_law_personal_data_p1.pdf", mode="off")
    assert {b.source for b in pages[0].blocks} == {"ocr"} and calls == 1
    assert "text_layer" not in pages[0].timings_ms


async def test_an_invisible_ocr_layer_over_a_scan_is_not_trusted(engines) -> None:
    name = LAYERS / "layer_invisible_ocr_scan.pdf"  # "ТНЕ СВЕАТ ЕМСТ1$Н РОСОМЕМТ" in render mode 3
    pages, calls = await read(engines, name, dpi=100)
    text = page_text(pages[0])
    assert {b.source for b in pages[0].blocks} == {"ocr"} and calls == 1
    assert "СВЕАТ" not in text
    assert cer(text, truth(name)) < 0.05


async def test_a_cyrillic_font_without_a_unicode_map_is_ocrd_not_returned_as_mojibake(engines) -> None:
    name = LAYERS / "layer_cp1251_no_tounicode.pdf"  # shows Russian, its layer says "Ïðèêàç"
    pages, _ = await read(engines, name)
    text = page_text(pages[0])
    assert {b.source for b in pages[0].blocks} == {"ocr"}
    assert not any("\u00c0" <= ch <= "\u00ff" for ch in text), text
    assert cer(text, truth(name)) < 0.05
    # "only" returns what the layer says, as asked, and never calls the recognizer.
    only, calls = await read(engines, name, mode="only")
    assert calls == 0 and "Ïðèêàç".lower() in page_text(only[0]).lower()


async def test_private_use_code_points_are_ocrd_not_returned(engines) -> None:
    name = LAYERS / "layer_private_use.pdf"  # shows English, its ToUnicode map sends it to U+E000..
    pages, calls = await read(engines, name)
    text = page_text(pages[0])
    assert calls == 1 and {b.source for b in pages[0].blocks} == {"ocr"}
    assert not any("\ue000" <= ch <= "\uf8ff" for ch in text)
    assert cer(text, truth(name)) < 0.05


async def test_white_invisible_and_off_page_text_is_not_read(engines) -> None:
    name = LAYERS / "layer_hidden_text.pdf"
    pages, calls = await read(engines, name)
    text = page_text(pages[0])
    assert calls == 0 and {b.source for b in pages[0].blocks} == {"text_layer"}
    assert cer(text, truth(name)) < 0.01
    assert not {"WHITE", "INVISIBLE", "OUTSIDE"} & set(text.split())


async def test_only_never_ocrs_even_a_scanned_page(engines) -> None:
    pages, calls = await read(engines, LAYERS / "mixed_scan_and_text.pdf", mode="only")
    assert calls == 0 and [bool(page_text(p).strip()) for p in pages] == [False, True]


async def test_only_reads_a_scanners_invisible_layer_but_not_what_the_page_does_not_show(engines) -> None:
    scan, calls = await read(engines, LAYERS / "layer_invisible_ocr_scan.pdf", mode="only", dpi=100)
    assert calls == 0 and "СВЕАТ" in page_text(scan[0])  # what the scanner's OCR wrote, as asked
    hidden, _ = await read(engines, LAYERS / "layer_hidden_text.pdf", mode="only")
    text = page_text(hidden[0])
    assert "Minutes of the meeting" in text and not {"WHITE", "OUTSIDE"} & set(text.split())


async def test_a_vlm_reading_whole_pages_still_reads_a_born_digital_page() -> None:
    """Without layout, one block of layer text would lose what a page reader gives (tables as
    HTML, formulas as LaTeX): with the VLM's tasks configured, the page goes to it."""
    from serve_app.config import LimitsArgs
    from serve_app.datatypes import Recognition
    from serve_app.pipeline import process_page

    class Reader:
        calls = 0

        async def recognize(self, requests):  # type: ignore[no-untyped-def]
            Reader.calls += 1
            return [Recognition("read by the VLM", 0.9, "vllm:dots") for _ in requests]

    doc = Document((DATA / "draft_federal_law_personal_data_p1.pdf").read_bytes(), LimitsArgs(), 100)
    vlm = await process_page(doc, 0, Options(ocr_tasks=frozenset({"table"})), None, Reader())
    assert Reader.calls == 1 and [b.source for b in vlm.blocks] == ["ocr"]
    cpu = await process_page(doc, 0, Options(), None, Reader())  # a CPU reader: the layer, no call
    assert Reader.calls == 1 and [b.source for b in cpu.blocks] == ["text_layer"]
    doc.close()


async def test_each_page_of_a_mixed_document_takes_its_own_path(engines) -> None:
    name = LAYERS / "mixed_scan_and_text.pdf"  # page 1 a scan, page 2 born-digital Russian
    pages, calls = await read(engines, name)
    assert [{b.source for b in p.blocks} for p in pages] == [{"ocr"}, {"text_layer"}]
    assert calls == 1
    assert cer("\n\n".join(page_text(p) for p in pages), truth(name)) < 0.03


def test_tasks_configured_for_the_recognizer_go_to_it_even_with_a_trusted_layer() -> None:
    import numpy as np

    from serve_app.datatypes import Region
    from serve_app.documents import Page
    from serve_app.pipeline import _from_layer

    cs = chars(("Title", 0, 0), ("cell", 0, 40))
    page = Page(0, np.full((100, 100, 3), 255, np.uint8), tuple(cs))
    title = Region((0, 0, 60, 20), "title", 1.0, ((0, 0, 49, 20),))
    table = Region((0, 40, 60, 60), "table", 1.0, ((0, 40, 39, 60),))
    read = _from_layer(page, [title, table], Options(ocr_tasks=frozenset({"table"})))
    assert read[0] is not None and read[0].text == "Title" and read[1] is None
    both = _from_layer(page, [title, table], Options())
    assert [r.text if r else None for r in both] == ["Title", "cell"]


@pytest.mark.parametrize(
    "text",
    [
        "Статья 1. Сфера действия настоящего Федерального закона",
        "The board approved the budget for the next year.",
        "1.2 Metrische Räume. Sei X eine Menge.",
        "Data sprzedaży: 2021-04-26, termin płatności: 2021-05-03",
        "Приказ № 17 от 11.02.2013 (ФСТЭК России), ст. 19 Федерального закона № 149-ФЗ",
        "安徽省建设用地使用标准（2020 年版）",
        "日本語のテキストを読む",  # kanji, hiragana and katakana in one word
        "Nº 5, 1ª edición",
        "我们使用Python语言开发了这个系统",  # Latin words amid CJK, without spaces
        "Tシャツを買いました。",
    ],
)
def test_real_text_is_not_garbled(text: str) -> None:
    assert text_layer.garbled(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "Ïðèêàç ¹ 17 Îá óòâåðæäåíèè ïîðÿäêà õðàíåíèÿ",  # cp1251 read as Windows-1252
        "Пpикaз oб yтвepждeнии пopядкa",  # Latin look-alikes inside Cyrillic words (p, a, o, y, e)
        "\ue001\ue002\ue003 \ue004\ue005 текст",  # private-use code points of a symbol font
        "\x03\x04\x05\x06 \x07\x08",  # glyph ids without a map
    ],
)
def test_broken_layer_text_is_garbled(text: str) -> None:
    assert text_layer.garbled(text) is not None


def chars(*words: tuple[str, float, float]) -> list[Char]:
    """Characters of words at (x, y), 10 px a letter, 20 px tall, a generated space after each."""
    out = []
    for word, x, y in words:
        out += [Char(ch, (x + 10 * i, y, x + 10 * i + 9, y + 20)) for i, ch in enumerate(word)]
        out.append(Char(" ", (0, 0, 0, 0), generated=True))
    return out


def test_a_word_symbol_bullet_is_a_bullet_not_a_private_use_code() -> None:
    cs = chars(("\uf0b7", 0, 0), ("item", 20, 0), ("one", 70, 0))
    text = text_layer.text_of(cs, [i for i, c in enumerate(cs) if not c.blank])
    assert text == "\u2022 item one" and text_layer.garbled(text) is None


def test_a_region_without_characters_on_part_of_its_ink_is_ocrd() -> None:
    cs = chars(("hello", 0, 0), ("world", 60, 0))
    picked = list(range(len(cs)))
    picked = [i for i in picked if not cs[i].blank]
    text, why = text_layer.read(cs, picked, [(0, 0, 109, 20)])
    assert why is None and text == "hello world"
    # A second line of ink (a picture of text) that the layer does not have.
    _, why = text_layer.read(cs, picked, [(0, 0, 109, 20), (0, 30, 300, 50)])
    assert why is not None and "covers" in why


def test_characters_go_to_the_region_owning_their_line_and_other_regions_break_the_text() -> None:
    from serve_app.datatypes import Region

    cs = chars(("left", 0, 0), ("right", 200, 0), ("more", 0, 30))
    left = Region((0, 0, 100, 60), "text", 1.0, ((0, 0, 39, 20), (0, 30, 39, 50)))
    right = Region((190, 0, 300, 20), "text", 1.0, ((200, 0, 249, 20),))
    owners = text_layer.region_chars(cs, [left, right])
    assert text_layer.text_of(cs, owners[0]) == "left\nmore"
    assert text_layer.text_of(cs, owners[1]) == "right"
