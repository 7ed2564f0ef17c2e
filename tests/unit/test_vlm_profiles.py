"""The VLM pieces that need no engine: the repetition guard and PaddleOCR-VL's output parsing."""

from __future__ import annotations

import pytest

from serve_app.engines.profiles import PaddleOcrVl, otsl_to_html, strip_math_delimiters
from serve_app.engines.vlm import find_loop


def test_a_looping_tail_is_found_and_cut_after_one_copy() -> None:
    head = "Name | Value\n"
    loop = "<fcel>0<ecel>" * 40
    cut = find_loop(head + loop, min_chars=200, max_unit=120)
    assert cut == len(head) + len("<fcel>0<ecel>")
    assert find_loop("ab" * 150, 200, 120) == 2


def test_normal_text_and_short_repeats_are_not_loops() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 3 + "And then it stops, as text does."
    assert find_loop(text, 200, 120) is None
    assert find_loop("=" * 50, 200, 120) is None  # a rule of 50 characters is not a loop
    assert find_loop("-" * 250, 200, 120) == 1


def test_a_loop_cut_mid_unit_is_still_a_loop() -> None:
    assert find_loop("start " + "abc" * 100 + "ab", 200, 120) is not None


def test_otsl_spans_become_rowspan_and_colspan() -> None:
    # Header cell spanning two columns; a cell spanning two rows; an empty cell; a 2x2 block.
    otsl = (
        "<fcel>Group<lcel><fcel>Total<nl>"
        "<fcel>a<fcel>b<ucel><nl>"
        "<fcel>1<ecel><fcel>3<nl>"
        "<fcel>big<lcel><fcel>x<nl>"
        "<ucel><xcel><fcel>y<nl>"
    )
    assert otsl_to_html(otsl) == (
        "<table>"
        '<tr><td colspan="2">Group</td><td rowspan="2">Total</td></tr>'
        "<tr><td>a</td><td>b</td></tr>"
        "<tr><td>1</td><td></td><td>3</td></tr>"
        '<tr><td rowspan="2" colspan="2">big</td><td>x</td></tr>'
        "<tr><td>y</td></tr>"
        "</table>"
    )


def test_otsl_escapes_text_and_pads_short_rows() -> None:
    assert otsl_to_html("<fcel>a<b><fcel>c<nl><fcel>d<nl>") == (
        "<table><tr><td>a&lt;b&gt;</td><td>c</td></tr><tr><td>d</td><td></td></tr></table>"
    )
    assert otsl_to_html("") == "<table></table>"


@pytest.mark.parametrize(
    ("latex", "expected"),
    [("$$x^2$$", "x^2"), ("\\[ \\frac{a}{b} \\]", "\\frac{a}{b}"), ("\\(y\\)", "y"), ("z", "z")],
)
def test_formula_delimiters_are_stripped(latex: str, expected: str) -> None:
    assert strip_math_delimiters(latex) == expected


def test_paddleocr_vl_prompts_follow_its_chat_format() -> None:
    profile = PaddleOcrVl()
    prompt = profile.prompt("table")
    assert prompt.startswith("<|begin_of_sentence|>User: <|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>")
    assert prompt.endswith("Table Recognition:\nAssistant: ")
    assert profile.prompt("chart").endswith("Chart Recognition:\nAssistant: ")
    assert profile.prompt("unknown").endswith("OCR:\nAssistant: ")
    assert profile.parse("table", "<fcel>a<nl>") == "<table><tr><td>a</td></tr></table>"
    assert profile.parse("formula", "$$E=mc^2$$") == "E=mc^2"
    assert profile.parse("text", "  plain  ") == "plain"
