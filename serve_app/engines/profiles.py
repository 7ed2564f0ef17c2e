"""VLM model profiles: how to ask a model for each task and how to read its answer. One class each.

PaddleOCR-VL-0.9B (PaddlePaddle/PaddleOCR-VL): one request per layout region with the task prompt
after the image, in its own chat format; tables come back in OTSL, formulas in LaTeX.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import ClassVar

from .base import ChatTurn


class PaddleOcrVl:
    name = "paddleocr-vl"
    TASK_PROMPTS: ClassVar[dict[str, str]] = {
        "text": "OCR:",
        "table": "Table Recognition:",
        "formula": "Formula Recognition:",
        "chart": "Chart Recognition:",
    }

    def prompt(self, task: str) -> str:
        ask = self.TASK_PROMPTS.get(task, self.TASK_PROMPTS["text"])
        return (
            f"<|begin_of_sentence|>User: <|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>{ask}\nAssistant: "
        )

    def chat_prompt(self, turns: Sequence[ChatTurn]) -> str:
        """PaddleOCR-VL's chat format; a system turn is read as the start of the first user turn."""
        prompt, system = "<|begin_of_sentence|>", ""
        for turn in turns:
            if turn.role == "system":
                system += turn.text.strip() + "\n"
            elif turn.role == "user":
                image = "<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>" if turn.image is not None else ""
                prompt += f"User: {image}{system}{turn.text}\n"
                system = ""
            else:
                prompt += f"Assistant: {turn.text}<|end_of_sentence|>"
        return prompt + "Assistant: "

    def parse(self, task: str, text: str) -> str:
        text = text.strip()
        if task == "table" and "<" in text:
            return otsl_to_html(text)
        if task == "formula":
            return strip_math_delimiters(text)
        return text


PROFILES: dict[str, type[PaddleOcrVl]] = {PaddleOcrVl.name: PaddleOcrVl}

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
