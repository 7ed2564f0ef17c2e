"""Shared test data locations and helpers, and the Serve and S3 fixtures (Ray imported only when
a test asks for them)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from tests.browser import browser, page  # noqa: F401 (shared fixtures)
from tests.serve_fixtures import base_url, client, ray_session, s3  # noqa: F401 (shared fixtures)

DATA = Path(__file__).parent / "data"  # whole pages: also the bench smoke tests' corpus
CROPS = Path(__file__).parent / "crops"  # parts of pages, for tests that read one region
# The team's evaluation set; research-only pages are read from there, never copied.
EVALDATA = Path(os.environ.get("SERVE_APP_EVALDATA", Path(__file__).parents[2] / "shared" / "evaldata"))


def ground_truth(image: Path) -> str:
    stem = image.name.split(".")[0]
    return (image.parent / f"{stem}.gt.txt").read_text(encoding="utf-8")


def evaldata_page(page_id: str) -> Path:
    """A page of ../shared/evaldata by manifest id; skips where the folder is absent."""
    manifest = EVALDATA / "manifest.jsonl"
    if not manifest.is_file():
        pytest.skip(f"evaldata not present at {EVALDATA}")
    for line in manifest.read_text().splitlines():
        entry = json.loads(line)
        if entry["id"] == page_id:
            return EVALDATA / entry["image"]
    raise LookupError(page_id)


def phototest_tiff(pages: int) -> bytes:
    """A multi-page TIFF of phototest.png, each page marked apart at its top edge (no text there)."""
    from PIL import Image

    base = Image.open(DATA / "phototest.png").convert("RGB")
    frames = []
    for n in range(pages):
        frame = base.copy()
        frame.paste((255, 255, 255), (0, 0, 40 + 12 * n, 6))
        frames.append(frame)
    out = io.BytesIO()
    frames[0].save(out, format="TIFF", save_all=True, append_images=frames[1:], compression="tiff_deflate")
    return out.getvalue()


def reads_phototest(text: str) -> bool:
    return "quick brown dog jumped over the lazy fox" in " ".join(text.split())
