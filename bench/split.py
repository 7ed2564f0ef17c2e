"""The fixed split of evaldata by source: rules are tuned on one half and kept only if the other
half does not get worse; the Russian pages are a set of their own, reported beside both.

Each half mixes scans and born-digital pages; a source never straddles the two (its pages share a
look, so a rule fitted to one of them would seem to generalise to its siblings)."""

from __future__ import annotations

TUNING = frozenset({"omnidocbench", "pdfplumber_tests", "tesseract_test"})
VALIDATION = frozenset({
    "sroie", "funsd", "pdfminer_samples", "dedoc_tests", "ocrd_assets", "docling_tests",
    "acl_anthology", "pypdf_sample_files",
})  # fmt: skip
RUSSIAN = frozenset({"ru_docs"})
HALVES = ("tuning", "validation", "russian")


def half(source: str) -> str:
    """The half a source's pages belong to; a new source must be placed here first."""
    for name, sources in zip(HALVES, (TUNING, VALIDATION, RUSSIAN), strict=True):
        if source in sources:
            return name
    raise KeyError(f"evaldata source {source!r} is in no half of bench/split.py: place it there")
