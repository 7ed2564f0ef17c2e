"""VLM model profiles: how to ask a model for each task and how to read its answer. One class each.

- ``paddleocr-vl`` (PaddlePaddle/PaddleOCR-VL-0.9B): one request per layout region with the task
  prompt it was trained on; tables come back in OTSL (turned into HTML), formulas in LaTeX.
- ``dots.ocr`` (rednote-hilab/dots.ocr): the whole page in one request with its layout-all prompt;
  the answer is a JSON list of blocks (bbox, category, text) in the coordinates of the image it saw.
- ``qwen-vl`` (Qwen2.5-VL / Qwen3-VL): a plain instruction per region or per page, from config.
- ``glm-ocr`` (zai-org/GLM-OCR): one request per layout region with its SDK's task prompts; tables
  in HTML, formulas in LaTeX.
- ``deepseek-ocr`` (deepseek-ai/DeepSeek-OCR): the whole page with its grounding prompt; Markdown
  blocks each with a label and a box in 0..999.
- ``mineru2.5`` (opendatalab/MinerU2.5): two steps, the page's layout, then each block's crop.

Prompts are written in each model's own chat format (``ChatFormat``), exactly as its chat template
renders them; vLLM expands the image placeholder into the image's tokens.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ..datatypes import Box, ChatTurn, ReadBlock, Task


@dataclass(frozen=True)
class ChatFormat:
    image: str  # the placeholder vLLM expands into the image's tokens
    user: str  # "{image}" and "{text}" are filled in
    assistant: str  # a past assistant turn
    generation: str  # what opens the answer
    begin: str = ""
    # None: the model has no system role; system text is put before the first user turn's text.
    system: str | None = None

    def render(self, turns: Sequence[ChatTurn]) -> str:
        out, pending = self.begin, ""
        for turn in turns:
            if turn.role == "system":
                if self.system is None:
                    pending += turn.text.strip() + "\n"
                else:
                    out += self.system.format(text=turn.text)
            elif turn.role == "user":
                image = self.image if turn.image is not None else ""
                out += self.user.format(image=image, text=pending + turn.text)
                pending = ""
            else:
                out += self.assistant.format(text=turn.text)
        return out + self.generation

    def ask(self, text: str) -> str:
        """One user turn with the image and ``text``, then the start of the answer."""
        return self.begin + self.user.format(image=self.image, text=text) + self.generation


@dataclass(frozen=True)
class LayoutBlock:
    """A block of a two-step reader's layout answer."""

    bbox: Box  # in 0..1 of the page's width and height
    label: str  # ours
    task: Task | None  # what to ask of its crop; None: not read (a picture)
    angle: int = 0  # MinerU's rotation token (0, 90, 180, 270): the crop is turned by it, as its client does


@dataclass(frozen=True)
class Reading:
    text: str
    blocks: tuple[ReadBlock, ...] = ()  # a whole-page reader's blocks, in the sent image's pixels
    error: str | None = None


class Profile:
    name: ClassVar[str]
    chat_format: ClassVar[ChatFormat]
    # Instructions per task; "page" is the whole-page instruction. Config may override any.
    prompts: ClassVar[dict[str, str]]
    # True: a model folder whose chat template renders an OCR prompt other than ours is refused at
    # start (vlm.py). False where one profile serves models whose templates differ (Qwen2.5-VL
    # adds a default system turn, Qwen3-VL does not): a difference is logged.
    exact_template: ClassVar[bool] = False
    # Where a whole-page reader's boxes live: None, the pixels of the image sent; N, 0..N of its
    # width and height.
    box_scale: ClassVar[float | None] = None
    # What its model needs of vLLM: logits processors loaded at engine start (``module:Class``),
    # and arguments of every request's SamplingParams.
    logits_processors: ClassVar[tuple[str, ...]] = ()
    sampling: ClassVar[dict[str, Any]] = {}
    # A reader that lays the page out itself in a first request ("layout" prompt), then reads each
    # block's crop (MinerU2.5): the layout request's image size.
    layout_size: ClassVar[tuple[int, int] | None] = None

    def __init__(self, prompts: Mapping[str, str] | None = None, max_pixels: int | None = None) -> None:
        self._prompts = {**self.prompts, **(prompts or {})}
        self.max_pixels = max_pixels

    def instruction(self, task: str, whole_page: bool) -> str:
        key = "page" if whole_page and "page" in self._prompts else task
        return self._prompts.get(key, self._prompts["text"])

    def prompt(self, task: str, whole_page: bool) -> str:
        return self.chat_format.ask(self.instruction(task, whole_page))

    def chat_prompt(self, turns: Sequence[ChatTurn]) -> str:
        return self.chat_format.render(turns)

    def image_size(self, width: int, height: int) -> tuple[int, int]:
        """The size to send the image at: scaled down to ``max_pixels`` when set; the model's own
        processor then fits it to its patch grid."""
        if self.max_pixels is None or width * height <= self.max_pixels:
            return width, height
        scale = math.sqrt(self.max_pixels / (width * height))
        return max(1, int(width * scale)), max(1, int(height * scale))

    def sampling_args(self, task: str) -> dict[str, Any]:
        """What the profile adds to a request's SamplingParams for ``task`` ("page": a whole page,
        or a two-step reader's layout request)."""
        return dict(self.sampling)

    def layout(self, text: str) -> list[LayoutBlock]:
        """A two-step reader's layout answer as blocks."""
        raise NotImplementedError(f"profile {self.name!r} reads pages in one request")

    def block_image(self, page: Any, block: LayoutBlock) -> Any:
        """A two-step reader's crop of ``block`` from the page (a PIL image), as it reads it."""
        raise NotImplementedError(f"profile {self.name!r} reads pages in one request")

    def parse(self, task: str, text: str, whole_page: bool) -> Reading:
        text = strip_code_fence(text.strip())
        if task == "table" and "<" in text:
            return Reading(text if text.startswith("<table") else otsl_to_html(text))
        if task == "formula":
            return Reading(strip_math_delimiters(text))
        return Reading(text)


class PaddleOcrVl(Profile):
    name = "paddleocr-vl"
    exact_template = True
    chat_format = ChatFormat(
        begin="<|begin_of_sentence|>",
        image="<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>",
        system="{text}\n",
        user="User: {image}{text}\n",
        assistant="Assistant:\n{text}</s>",
        generation="Assistant:\n",
    )
    prompts: ClassVar[dict[str, str]] = {
        "text": "OCR:",
        "table": "Table Recognition:",
        "formula": "Formula Recognition:",
        "chart": "Chart Recognition:",
    }


class QwenVl(Profile):
    """Qwen2.5-VL and Qwen3-VL share the ChatML format and the vision placeholder."""

    name = "qwen-vl"
    chat_format = ChatFormat(
        image="<|vision_start|><|image_pad|><|vision_end|>",
        system="<|im_start|>system\n{text}<|im_end|>\n",
        user="<|im_start|>user\n{image}{text}<|im_end|>\n",
        assistant="<|im_start|>assistant\n{text}<|im_end|>\n",
        generation="<|im_start|>assistant\n",
    )
    prompts: ClassVar[dict[str, str]] = {
        "text": "Read all the text in the image. Output only the text, line by line, as it is written.",
        "table": "Convert the table in the image to HTML. Output only the <table> element.",
        "formula": "Write the formula in the image in LaTeX. Output only the LaTeX.",
        "chart": "Convert the chart in the image to a Markdown table of its data.",
        "page": (
            "Convert this document page to Markdown in reading order. Write tables as HTML and "
            "formulas as LaTeX; leave out page headers, footers and pictures. Output only the Markdown."
        ),
    }


class GlmOcr(Profile):
    """zai-org/GLM-OCR (0.9B, vLLM-native): a region reader, as in its own SDK (which lays pages
    out with PP-DocLayoutV3). Prompts: its SDK's ``task_prompt_mapping`` (glmocr/config.yaml,
    zai-org/GLM-OCR @ cef4d0e), image first, no system turn; it has no chart prompt (its SDK skips
    charts), so a chart is read as text. Tables come back as HTML, formulas as LaTeX. The rendering
    below is the GLM-4.1V family's as ports of GLM-OCR print it, not read from the model folder:
    ``check_chat_template`` logs any difference at start. Its SDK samples with
    ``repetition_penalty: 1.1`` (sampling, in the config)."""

    name = "glm-ocr"
    chat_format = ChatFormat(
        begin="[gMASK]<sop>",
        image="<|begin_of_image|><|image|><|end_of_image|>",
        system="<|system|>\n{text}",
        user="<|user|>\n{image}{text}",
        assistant="<|assistant|>\n{text}",
        generation="<|assistant|>\n",
    )
    prompts: ClassVar[dict[str, str]] = {
        "text": "Text Recognition:",
        "table": "Table Recognition:",
        "formula": "Formula Recognition:",
    }


# dots.ocr's categories -> our labels (footnotes go with footers, as for PP-DocLayoutV2).
DOTS_LABELS = {
    "Caption": "figure_caption", "Footnote": "footer", "Formula": "equation", "List-item": "text",
    "Page-footer": "footer", "Page-header": "header", "Picture": "figure", "Section-header": "title",
    "Table": "table", "Text": "text", "Title": "title",
}  # fmt: skip


class DotsOcr(Profile):
    name = "dots.ocr"
    # Its chat template (the model folder's tokenizer_config.json); the image goes first in the user text.
    chat_format = ChatFormat(
        image="<|img|><|imgpad|><|endofimg|>",
        system="<|system|>{text}<|endofsystem|>\n",
        user="<|user|>{image}{text}<|endofuser|>",
        assistant="<|assistant|>{text}<|endofassistant|>",
        generation="<|assistant|>",
    )
    # ``prompt_layout_all_en`` from rednote-hilab/dots.ocr dots_ocr/utils/prompts.py (MIT), verbatim:
    # the model was trained on this text.
    prompts: ClassVar[dict[str, str]] = {
        "page": """Please output the layout information from the PDF image, including each layout element's bbox, its category, and the corresponding text content within the bbox.

1. Bbox format: [x1, y1, x2, y2]

2. Layout Categories: The possible categories are ['Caption', 'Footnote', 'Formula', 'List-item', 'Page-footer', 'Page-header', 'Picture', 'Section-header', 'Table', 'Text', 'Title'].

3. Text Extraction & Formatting Rules:
    - Picture: For the 'Picture' category, the text field should be omitted.
    - Formula: Format its text as LaTeX.
    - Table: Format its text as HTML.
    - All Others (Text, Title, etc.): Format their text as Markdown.

4. Constraints:
    - The output text must be the original text from the image, with no translation.
    - All layout elements must be sorted according to human reading order.

5. Final Output: The entire output must be a single JSON object.
""",  # noqa: E501
        "text": "Extract the text content from this image.",
    }
    FACTOR = 28  # its vision tower sees 14 px patches merged 2 x 2
    MIN_PIXELS, MAX_PIXELS = 3136, 11289600  # dots_ocr/utils/consts.py

    def image_size(self, width: int, height: int) -> tuple[int, int]:
        """Sent at the size its processor would pick (``smart_resize``), so the boxes it answers
        are in a space we know and can scale back to the page exactly."""
        h, w = smart_resize(height, width, self.FACTOR, self.MIN_PIXELS, self.max_pixels or self.MAX_PIXELS)
        return w, h

    def parse(self, task: str, text: str, whole_page: bool) -> Reading:
        if not whole_page:
            return super().parse(task, text, whole_page)
        cells, repaired = layout_cells(text)
        if cells is None:
            return Reading(text.strip(), error="answer is not dots.ocr layout JSON")
        blocks = []
        for cell in cells:
            label = DOTS_LABELS.get(str(cell.get("category")), "text")
            content = str(cell.get("text") or "").strip()
            if label == "title":
                content = content.lstrip("#").strip()
            elif label == "equation":
                content = strip_math_delimiters(content)
            blocks.append(ReadBlock(bbox=cell["bbox"], label=label, text=content))
        joined = "\n\n".join(b.text for b in blocks if b.text)
        cut = "layout JSON was cut short; its whole blocks are kept" if repaired else None
        return Reading(joined, tuple(blocks), cut)


# DeepSeek-OCR's grounding labels -> ours (its own scripts special-case image and title).
DEEPSEEK_LABELS = {
    "title": "title", "sub_title": "title", "text": "text", "table": "table", "equation": "equation",
    "image": "figure", "image_caption": "figure_caption", "table_caption": "table_caption",
}  # fmt: skip
DEEPSEEK_GROUNDING = re.compile(r"<\|ref\|>(.*?)<\|/ref\|><\|det\|>(.*?)<\|/det\|>", re.DOTALL)
DEEPSEEK_EOS = "<｜end▁of▁sentence｜>"
# vLLM's n-gram no-repeat logits processor (written for DeepSeek-OCR; its module needs torchvision).
NGRAM_PROCESSOR = "vllm.model_executor.models.deepseek_ocr:NGramPerReqLogitsProcessor"


class DeepSeekOcr(Profile):
    """deepseek-ai/DeepSeek-OCR (vLLM-native): the whole page with its grounding prompt, answered
    as Markdown blocks each after a ``<|ref|>label<|/ref|><|det|>[[x1, y1, x2, y2]]<|/det|>`` line,
    boxes in 0..999 of the image. Plain prompts, no chat template; vLLM's processor adds BOS and
    tiles the image itself. Prompts, sampling and parsing follow DeepSeek-OCR-vllm/config.py and
    run_dpsk_ocr_pdf.py (deepseek-ai/DeepSeek-OCR @ e4ac34e) and vLLM's recipe: its n-gram
    no-repeat logits processor (vLLM's own), and special tokens kept in the answer."""

    name = "deepseek-ocr"
    chat_format = ChatFormat(image="<image>", user="{image}\n{text}", assistant="{text}\n", generation="")
    prompts: ClassVar[dict[str, str]] = {
        "page": "<|grounding|>Convert the document to markdown.",
        "text": "Free OCR.",
    }
    box_scale = 999.0
    logits_processors = (NGRAM_PROCESSOR,)
    # 128821 and 128822 are <td> and </td>: a table's cells may repeat.
    sampling: ClassVar[dict[str, Any]] = {
        "skip_special_tokens": False,
        "extra_args": {"ngram_size": 30, "window_size": 90, "whitelist_token_ids": [128821, 128822]},
    }

    def parse(self, task: str, text: str, whole_page: bool) -> Reading:
        text = text.replace(DEEPSEEK_EOS, "")
        found = list(DEEPSEEK_GROUNDING.finditer(text))
        if not whole_page or not found:
            return super().parse(task, text, whole_page)
        blocks = []
        for match, after in zip(found, [*found[1:], None], strict=True):
            try:
                boxes = json.loads(match.group(2))
            except ValueError:
                continue  # a box cut short at the end of the answer
            if not boxes or not all(isinstance(b, list) and len(b) == 4 for b in boxes):
                continue
            label = DEEPSEEK_LABELS.get(match.group(1).strip(), "text")
            # Up to the next block, or to a last tag cut short by the token limit.
            content = text[match.end() : after.start() if after else len(text)].split("<|ref|>")[0].strip()
            if label == "title":
                content = content.lstrip("#").strip()
            elif label == "equation":
                content = strip_math_delimiters(content)
            elif label == "figure":
                content = ""
            bbox = (min(b[0] for b in boxes), min(b[1] for b in boxes),
                    max(b[2] for b in boxes), max(b[3] for b in boxes))  # fmt: skip
            blocks.append(ReadBlock(bbox=bbox, label=label, text=content))
        return Reading("\n\n".join(b.text for b in blocks if b.text), tuple(blocks))


# MinerU2.5's block types (mineru-vl-utils structs.py) -> ours; containers whose content comes as
# other blocks (list, equation_block) are left out.
MINERU_LABELS = {
    "text": "text", "title": "title", "table": "table", "image": "figure", "code": "text",
    "algorithm": "text", "header": "header", "footer": "footer", "page_number": "footer",
    "page_footnote": "footer", "aside_text": "text", "equation": "equation", "ref_text": "reference",
    "phonetic": "text", "table_caption": "table_caption", "image_caption": "figure_caption",
    "code_caption": "figure_caption", "table_footnote": "table_caption",
    "image_footnote": "figure_caption", "unknown": "text",
}  # fmt: skip
MINERU_LAYOUT = re.compile(
    r"^<\|box_start\|>(\d+)\s+(\d+)\s+(\d+)\s+(\d+)<\|box_end\|><\|ref_start\|>(\w+?)<\|ref_end\|>(.*)$"
)
MINERU_ANGLES = {"<|rotate_up|>": 0, "<|rotate_right|>": 90, "<|rotate_down|>": 180, "<|rotate_left|>": 270}


class MinerU25(Profile):
    """opendatalab/MinerU2.5-2509-1.2B (Qwen2-VL, vLLM-native): the page's layout in a first
    request (the page at 1036 x 1036, boxes in 0..1000 with kind and angle), then each block's crop
    with the prompt of its kind. Prompts, system turn, sampling, sizes and parsing follow
    mineru-vl-utils @ dd2ecf5 (mineru_client.py, structs.py); tables come back in OTSL. Its
    full-history n-gram ban (their own logits processor, not installed here) is vLLM's n-gram
    processor with a window longer than any answer."""

    name = "mineru2.5"
    # Qwen2-VL's ChatML, with its client's system turn always sent.
    chat_format = replace(
        QwenVl.chat_format, begin="<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    )
    prompts: ClassVar[dict[str, str]] = {
        "text": "\nText Recognition:",
        "table": "\nTable Recognition:",
        "formula": "\nFormula Recognition:",
        "page": "\nLayout Detection:",
    }
    layout_size = (1036, 1036)
    logits_processors = (NGRAM_PROCESSOR,)
    MIN_EDGE, MAX_EDGE_RATIO = 28, 50

    def sampling_args(self, task: str) -> dict[str, Any]:
        presence, frequency = {"page": (0.0, 0.0), "table": (1.0, 0.005)}.get(task, (1.0, 0.05))
        return {
            "skip_special_tokens": False,
            "presence_penalty": presence,
            "frequency_penalty": frequency,
            "extra_args": {"ngram_size": 100, "window_size": 1 << 20},
        }

    def layout(self, text: str) -> list[LayoutBlock]:
        blocks = []
        for line in text.splitlines():
            match = MINERU_LAYOUT.match(line.strip())
            if match is None or match.group(5) not in MINERU_LABELS:
                continue
            x0, y0, x1, y1 = (int(v) for v in match.groups()[:4])
            x0, x1, y0, y1 = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
            if x1 > 1000 or y1 > 1000 or x0 == x1 or y0 == y1:
                continue
            label = MINERU_LABELS[match.group(5)]
            task: Task | None = {"table": "table", "equation": "formula", "figure": None}.get(label, "text")
            angle = next((a for token, a in MINERU_ANGLES.items() if token in match.group(6)), 0)
            blocks.append(LayoutBlock((x0 / 1000, y0 / 1000, x1 / 1000, y1 / 1000), label, task, angle))
        return blocks

    def block_image(self, page: Any, block: LayoutBlock) -> Any:
        """Cropped, turned upright, padded white to an edge ratio of at most 50 and scaled up to a
        short edge of at least 28 px (mineru-vl-utils' ``resize_by_need``)."""
        from PIL import Image

        w, h = page.size
        x0, y0, x1, y1 = block.bbox
        crop = page.crop((round(x0 * w), round(y0 * h), max(round(x1 * w), round(x0 * w) + 1),
                          max(round(y1 * h), round(y0 * h) + 1)))  # fmt: skip
        if block.angle:
            crop = crop.rotate(block.angle, expand=True)
        cw, ch = crop.size
        if max(cw, ch) > self.MAX_EDGE_RATIO * min(cw, ch):
            side = math.ceil(max(cw, ch) / self.MAX_EDGE_RATIO)
            padded = Image.new("RGB", (max(cw, side), max(ch, side)), "white")
            padded.paste(crop, ((padded.width - cw) // 2, (padded.height - ch) // 2))
            crop, (cw, ch) = padded, padded.size
        if min(cw, ch) < self.MIN_EDGE:
            scale = self.MIN_EDGE / min(cw, ch)
            crop = crop.resize((math.ceil(cw * scale), math.ceil(ch * scale)), Image.Resampling.BICUBIC)
        return crop


PROFILES: dict[str, type[Profile]] = {
    p.name: p for p in (PaddleOcrVl, DotsOcr, QwenVl, GlmOcr, DeepSeekOcr, MinerU25)
}


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(height, width) rounded to multiples of ``factor`` within [min_pixels, max_pixels], aspect
    kept: the Qwen2-VL processor's rule, which dots.ocr uses."""
    if max(height, width) / max(1, min(height, width)) > 200:
        raise ValueError(f"aspect ratio above 200 ({width}x{height})")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


_CELL_START = re.compile(r'\{\s*"bbox"\s*:')


def layout_cells(text: str) -> tuple[list[dict[str, Any]] | None, bool]:
    """dots.ocr's answer -> (cells with a 4-number ``bbox``, whether it had to be repaired).

    A whole JSON list is taken as is. An answer cut short (max tokens, a stopped loop) keeps every
    complete ``{"bbox": ...}`` object before the cut; identical repeats are dropped. None when no
    cell can be read at all."""
    text = strip_code_fence(text.strip())
    try:
        data = json.loads(text)
        whole = isinstance(data, list)
    except json.JSONDecodeError:
        whole = False
    if whole:
        cells = [c for c in map(_cell, data) if c is not None]
        return (cells if cells or not data else None), False
    decoder, cells, seen = json.JSONDecoder(), [], set()
    for match in _CELL_START.finditer(text):
        try:
            found, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        cell, key = _cell(found), json.dumps(found, sort_keys=True)
        if cell is not None and key not in seen:
            seen.add(key)
            cells.append(cell)
    return (cells or None), True


def _cell(value: Any) -> dict[str, Any] | None:
    """A layout cell with its bbox as 4 floats, or None when it has no usable bbox."""
    bbox = value.get("bbox") if isinstance(value, dict) else None
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox)):
        return None
    return {**value, "bbox": tuple(float(v) for v in bbox)}


def scale_box(box: Box, sx: float, sy: float, width: int, height: int) -> Box:
    """A box from the sent image's pixels to the page's, clipped to the page."""
    x0, y0, x1, y1 = box
    clip = lambda v, hi: min(max(v, 0.0), float(hi))  # noqa: E731
    return clip(x0 * sx, width), clip(y0 * sy, height), clip(x1 * sx, width), clip(y1 * sy, height)


_FENCE = re.compile(r"^```[\w-]*\n(.*?)\n?```$", re.DOTALL)


def strip_code_fence(text: str) -> str:
    """Chat models like to wrap answers in ```markdown ... ```."""
    match = _FENCE.match(text)
    return match.group(1).strip() if match else text


_OTSL_TOKEN = re.compile(r"<(fcel|ecel|lcel|ucel|xcel|nl)>")


def otsl_to_html(otsl: str) -> str:
    """OTSL (cells ``<fcel>`` text / ``<ecel>`` empty, ``<lcel>`` merged left, ``<ucel>`` merged up,
    ``<xcel>`` both, ``<nl>`` row end) -> an HTML table with rowspan/colspan."""
    rows: list[list[tuple[str, str]]] = [[]]
    parts = _OTSL_TOKEN.split(otsl)
    # split() alternates text and tag names: [before, tag, text, tag, text, ...]
    for i in range(1, len(parts), 2):
        tag, content = parts[i], parts[i + 1]
        if tag == "nl":
            rows.append([])
        else:
            rows[-1].append((tag, content.strip()))
    rows = [r for r in rows if r]
    if not rows:
        return "<table></table>"
    width = max(len(r) for r in rows)
    grid = [r + [("ecel", "")] * (width - len(r)) for r in rows]
    out = ["<table>"]
    for r, row in enumerate(grid):
        cells = []
        for c, (tag, content) in enumerate(row):
            if tag not in ("fcel", "ecel"):
                continue  # covered by a span
            colspan = 1
            while c + colspan < width and grid[r][c + colspan][0] in ("lcel", "xcel"):
                colspan += 1
            rowspan = 1
            while r + rowspan < len(grid) and grid[r + rowspan][c][0] in ("ucel", "xcel"):
                rowspan += 1
            attrs = (f' rowspan="{rowspan}"' if rowspan > 1 else "") + (
                f' colspan="{colspan}"' if colspan > 1 else ""
            )
            cells.append(f"<td{attrs}>{html.escape(content)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def strip_math_delimiters(latex: str) -> str:
    for left, right in (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$")):
        if latex.startswith(left) and latex.endswith(right) and len(latex) > len(left) + len(right):
            return latex[len(left) : -len(right)].strip()
    return latex
