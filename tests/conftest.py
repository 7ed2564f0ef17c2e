"""Shared test data locations and helpers (no Ray here)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
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
