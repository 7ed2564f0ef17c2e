"""The tuning / validation split of evaldata is fixed and total: every source is in one half."""

from __future__ import annotations

import json

import pytest

from bench.split import RUSSIAN, TUNING, VALIDATION, half
from tests.conftest import EVALDATA


def test_the_halves_do_not_share_a_source() -> None:
    assert not (TUNING & VALIDATION) and not (TUNING & RUSSIAN) and not (VALIDATION & RUSSIAN)
    with pytest.raises(KeyError, match=r"bench/split\.py"):
        half("a source nobody placed")


def test_every_evaldata_page_is_in_a_half_and_the_two_halves_are_alike_in_size() -> None:
    manifest = EVALDATA / "manifest.jsonl"
    if not manifest.is_file():
        pytest.skip(f"evaldata not present at {EVALDATA}")
    halves = [half(json.loads(line)["source"]) for line in manifest.read_text().splitlines()]
    tuning, validation = halves.count("tuning"), halves.count("validation")
    assert halves.count("russian") > 0 and abs(tuning - validation) <= 0.2 * (tuning + validation)
