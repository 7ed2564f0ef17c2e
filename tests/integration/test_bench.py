"""Smoke of the load-test harness against the test Serve app: about ten requests, the service and
the bare baseline only; results.json, report.md and the plots come out well formed."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from bench.__main__ import main
from tests.conftest import DATA


def test_the_harness_measures_the_service_and_the_bare_engines(base_url: str, tmp_path: Path) -> None:
    argv = ["--corpus", str(DATA), "--systems", "service,bare", "--url", base_url, "--concurrency", "1,2",
            "--requests", "3", "--warmup", "1", "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    out = main(argv)
    results = json.loads((out / "results.json").read_text())
    assert results["corpus"]["pages"] == 4  # 3 images and a one-page PDF
    service, bare = results["systems"]["service"], results["systems"]["bare"]
    assert [s["level"] for s in service["steps"]] == [1, 2] and [s["level"] for s in bare["steps"]] == [1]
    for step in service["steps"] + bare["steps"]:
        assert step["ok"] == step["requests"] == 3 and step["errors"] == {}
        assert step["pages_per_s"] > 0 and step["latency_s"]["p50"] <= step["latency_s"]["max"]
        assert {"layout", "recognize", "request_total"} <= set(step["stage_ms_mean"])
    assert "P3" in results["targets"] and isinstance(results["targets"]["P3"]["met"], bool)
    report = (out / "report.md").read_text()
    assert (
        "| service | closed | 2 clients | 3/3 |" in report and "| bare | closed | 1 clients | 3/3 |" in report
    )
    for plot in ("throughput.png", "latency_cdf.png"):
        with Image.open(out / plot) as image:
            assert image.format == "PNG" and image.width > 300
