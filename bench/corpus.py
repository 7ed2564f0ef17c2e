"""The pages a benchmark sends: every page of every document in a folder, as image bytes.

Every system gets the very same bytes (PNG/JPEG pages; PDF pages rendered once at 200 DPI, the
service's default), so figures count pages, not requests, and compare like with like.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
PDF_DPI = 200


@dataclass(frozen=True)
class Page:
    name: str  # "<relative path>" or "<relative path>#<page>"
    data: bytes
    media_type: str
    lang: tuple[str, ...] = ()  # ISO 639-1, where the folder's manifest.jsonl (evaldata) says


def tesseract_lang(page_lang: tuple[str, ...] | list[str]) -> str:
    """What a user runs ``tesseract -l`` with on a page in these languages: Russian pages in
    Russian, every other one in English (the languages Debian's packages give this machine)."""
    return "rus" if "ru" in page_lang else "eng"


def load(folder: Path, limit: int | None = None) -> list[Page]:
    """Pages of the documents under ``folder`` in name order (``*.source.pdf`` copies of image pages
    in the evaldata layout are skipped: the image is the page)."""
    manifest = folder / "manifest.jsonl"
    langs = {
        entry["image"]: tuple(entry.get("lang", ()))
        for entry in map(json.loads, manifest.read_text().splitlines() if manifest.is_file() else [])
    }
    pages: list[Page] = []
    for path in sorted(folder.rglob("*")):
        if limit is not None and len(pages) >= limit:
            break
        name = str(path.relative_to(folder))
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            media = (
                "image/png"
                if suffix == ".png"
                else "image/jpeg"
                if suffix in (".jpg", ".jpeg")
                else "image/tiff"
            )
            pages.append(Page(name, path.read_bytes(), media, langs.get(name, ())))
        elif suffix == ".pdf" and not path.name.endswith(".source.pdf"):
            pages.extend(_pdf_pages(path, name))
    if not pages:
        raise SystemExit(f"no pages (png, jpg, tiff, pdf) under {folder}")
    return pages[:limit]


def _pdf_pages(path: Path, name: str) -> list[Page]:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(path.read_bytes())
    try:
        out = []
        for index in range(len(pdf)):
            buf = io.BytesIO()
            pdf[index].render(scale=PDF_DPI / 72).to_pil().convert("RGB").save(buf, format="PNG")
            out.append(Page(f"{name}#{index + 1}", buf.getvalue(), "image/png"))
        return out
    finally:
        pdf.close()
