from __future__ import annotations

from serve_app.assemble import page_json, page_markdown, page_text, result_body
from serve_app.pipeline import Block, PageResult


def B(order: int, label: str, text: str) -> Block:
    return Block(order, label, (0.0, 0.0, 10.0, 10.0), 0.9, text, "tesseract:eng", 0.95)


PAGE = PageResult(
    page=1,
    width=100,
    height=200,
    blocks=[
        B(0, "header", "Running head"),
        B(1, "title", "A  Title\nsplit"),
        B(2, "text", "First para-\ngraph line\nsecond line"),
        B(3, "figure", "noise"),
        B(4, "figure_caption", "Figure 1: a plot"),
        B(5, "text", "   "),
        B(6, "footer", "12"),
    ],
)


def test_markdown_titles_paragraphs_figures_and_no_running_heads() -> None:
    md = page_markdown(PAGE)
    assert md.splitlines()[0] == "## A Title split"
    assert "First paragraph line\nsecond line" in md
    assert "![figure 1.3](#page-1-block-3)" in md
    assert "*Figure 1: a plot*" in md
    assert "Running head" not in md and "12" not in md


def test_plain_text_keeps_every_block_in_order() -> None:
    text = page_text(PAGE)
    assert text.startswith("Running head\n\nA  Title")
    assert text.endswith("12")


def test_document_markdown_separates_pages_and_json_has_blocks() -> None:
    second = PageResult(page=2, width=1, height=1, blocks=[B(0, "text", "two")])
    whole = result_body([page_json(PAGE), page_json(second)], "r1", {}, {}, {}, job_id="j1")
    assert whole["markdown"].endswith("---\n\ntwo") and whole["text"].endswith("\n\ntwo")
    assert whole["request_id"] == "r1" and whole["job_id"] == "j1"
    body = page_json(PAGE)
    assert body["page"] == 1 and len(body["blocks"]) == 7
    assert body["blocks"][1]["bbox"] == [0.0, 0.0, 10.0, 10.0]


def test_a_long_block_called_a_title_is_a_paragraph_not_a_heading() -> None:
    # The README's phototest page: the layout model calls the whole page (two paragraphs) a title.
    from tests.conftest import DATA, ground_truth

    whole = ground_truth(DATA / "phototest.png")
    page = PageResult(page=1, width=1, height=1, blocks=[B(0, "title", whole), B(1, "title", "Two\nlines")])
    md = page_markdown(page)
    assert not md.startswith("#") and md.endswith("\n\n## Two lines")
