"""Page results -> Markdown and plain text; JSON shapes of the response."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from .pipeline import Block, PageResult

# Kept in JSON, left out of Markdown: running heads and page numbers are not content.
NOT_IN_MARKDOWN = {"header", "footer"}
PAGE_BREAK = "\n\n---\n\n"
# Headings are short: a block the layout model calls a title but that runs longer (a paragraph
# in large or bold print, a boxed notice) is a paragraph in Markdown.
HEADING_MAX_LINES = 3
HEADING_MAX_CHARS = 150


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _paragraph(text: str) -> str:
    # Join hyphenated line ends ("docu-\nment") and keep the paragraph as one Markdown block.
    text = re.sub(r"(\w)-\n(\w)", r"\1\2", text.strip())
    return re.sub(r"[ \t]*\n[ \t]*", "\n", text)


def is_heading(text: str) -> bool:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return len(lines) <= HEADING_MAX_LINES and len(_one_line(text)) <= HEADING_MAX_CHARS


def block_markdown(block: Block, page: int) -> str:
    if block.label in NOT_IN_MARKDOWN:
        return ""
    if block.label == "figure":
        return f"![figure {page}.{block.order}](#page-{page}-block-{block.order})"
    if not block.text.strip():
        return ""
    if block.label == "title" and is_heading(block.text):
        return "## " + _one_line(block.text)
    if block.label in ("figure_caption", "table_caption"):
        return "*" + _one_line(block.text) + "*"
    if block.label == "table":
        text = block.text.strip()
        # A VLM's table is HTML (which Markdown carries as is); a CPU reader's is plain lines.
        return text if text.startswith("<table") else "```text\n" + text + "\n```"
    if block.label == "equation":
        return "$$\n" + block.text.strip() + "\n$$"
    return _paragraph(block.text)


def page_markdown(page: PageResult) -> str:
    parts = (block_markdown(b, page.page) for b in page.blocks)
    return "\n\n".join(p for p in parts if p)


def page_text(page: PageResult) -> str:
    """Every block's text in reading order, headers and footers included."""
    return "\n\n".join(b.text.strip() for b in page.blocks if b.text.strip())


def page_json(page: PageResult, image: str | None = None) -> dict[str, object]:
    """``image``: where the page's image is stored, relative to the result.json beside it."""
    return {
        "page": page.page,
        "width": page.width,
        "height": page.height,
        "blocks": [{**asdict(b), "bbox": list(b.bbox)} for b in page.blocks],
        "markdown": page_markdown(page),
        "text": page_text(page),
        "timings_ms": page.timings_ms,
        **({"image": image} if image is not None else {}),
    }


def result_body(
    pages: Sequence[Mapping[str, Any]],
    request_id: str | None,
    models: Mapping[str, Any],
    document: Mapping[str, Any],
    timings_ms: Mapping[str, float],
    **extra: Any,
) -> dict[str, Any]:
    """The answer for a document: its pages (``page_json``) and the whole as Markdown and text."""
    return {
        "request_id": request_id,
        **extra,
        "models": dict(models),
        "document": dict(document),
        "pages": list(pages),
        "markdown": PAGE_BREAK.join(str(p["markdown"]) for p in pages),
        "text": "\n\n".join(str(p["text"]) for p in pages),
        "timings_ms": dict(timings_ms),
    }
