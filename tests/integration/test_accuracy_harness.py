"""The accuracy harness against the test Serve app on the repository's own pages (no manifest: pages
are found by their .gt.txt); the service must read them better than the better bare engine + 0.03."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from bench.accuracy import main
from tests.conftest import DATA


def test_the_accuracy_harness_scores_the_service_and_the_bare_engines(base_url: str, tmp_path: Path) -> None:
    out = main([str(DATA), "--url", base_url, "--out", str(tmp_path)])
    results = json.loads((out / "results.json").read_text())
    rows = {r["id"]: r for r in results["pages"]}
    law = "draft_federal_law_personal_data_p1"
    assert set(rows) == {"phototest", "acl2020_s2orc_p1", law, "tech_spec_alpaca_p1"}
    # No manifest: tesseract's languages come from the script of the ground truth.
    assert rows[law]["tesseract"]["langs"] == "rus+eng" and rows["phototest"]["tesseract"]["langs"] == "eng"
    for row in rows.values():
        for system in ("service", "rapidocr", "tesseract"):
            assert 0 <= row[system]["order_error"] <= 1 and row[system]["cer"] >= 0
        assert not row["worse"], row
    overall = results["overall"]
    assert overall["pages"] == 4 and overall["worse_pages"] == 0
    assert overall["service_cer"] < overall["better_bare_cer"] + 0.03
    assert "| mean CER |" in (out / "report.md").read_text()
    with Image.open(out / "cer_by_source.png") as image:
        assert image.format == "PNG"
