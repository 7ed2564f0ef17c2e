"""What the service records of each answer (``serve_app.metrics``), seen through a recording meter
over the real API and engines; the export by Ray's agent is scraped in tests/integration."""

from __future__ import annotations

from collections import Counter

import pytest
from fastapi.testclient import TestClient

from serve_app.api import create_api
from serve_app.metrics import METRICS, Meter, page_observations
from tests.conftest import DATA
from tests.unit.engines_fixture import EngineBackend


class Recording(Meter):
    def __init__(self) -> None:
        self.seen: list[tuple[str, float, dict[str, str]]] = []

    def record(self, name: str, value: float, tags: dict[str, str] | None = None) -> None:
        super().record(name, value, tags)
        self.seen.append((name, value, tags or {}))


def test_an_answer_is_counted_by_page_source_region_engine_and_stage(make_args, engines) -> None:
    meter = Recording()
    client = TestClient(create_api(make_args(), EngineBackend(*engines), meter))
    files = {"file": ("p.pdf", (DATA / "draft_federal_law_personal_data_p1.pdf").read_bytes())}
    body = client.post("/v1/ocr", files=files, data={"text_layer": "off"}).json()
    blocks = body["pages"][0]["blocks"]
    names = Counter(name for name, _, _ in meter.seen)
    assert names["serve_app_pages"] == 1 and names["serve_app_regions"] == len(blocks) > 3
    assert ("serve_app_pages", 1, {"source": "ocr"}) in meter.seen
    engines_seen = Counter(tags["engine"] for name, _, tags in meter.seen if name == "serve_app_regions")
    assert engines_seen == Counter(b["engine"].split(":")[0] for b in blocks)  # tesseract:rus -> tesseract
    stages = {tags["stage"]: v for name, v, tags in meter.seen if name == "serve_app_stage_seconds"}
    assert set(stages) == {"render", "layout", "recognize", "page"}
    assert stages["page"] == body["pages"][0]["timings_ms"]["total"] / 1000 >= stages["layout"] > 0
    # The text layer read where it can be trusted: the page is counted as such.
    client.post("/v1/ocr", files=files)
    assert meter.seen.count(("serve_app_pages", 1, {"source": "text_layer"})) == 1


def test_flagged_blocks_are_counted_by_a_bounded_reason() -> None:
    page = {
        "blocks": [
            {"source": "ocr", "engine": "vllm:tiny", "error": "repetition"},
            {"source": "ocr", "engine": "vllm:tiny", "error": "generation stopped: length " + "x" * 500},
            {"source": "ocr", "engine": "vllm:tiny", "error": None},
            {"source": "ocr", "engine": "rapidocr", "error": "RuntimeError('/secret/path failed')"},
            {"source": "ocr", "engine": "rapidocr", "error": "/tmp/x: odd"},
        ],
        "timings_ms": {"total": 10.0},
    }
    flagged = [
        tags["reason"] for name, _, tags in page_observations([page]) if name == "serve_app_flagged_blocks"
    ]
    assert flagged[0] == "repetition" and len(flagged) == 4
    assert flagged[1].startswith("generation stopped: length") and len(flagged[1]) == 40
    assert flagged[2:] == ["RuntimeError", "other"]  # never an exception's arguments


def test_a_metric_is_recorded_only_by_its_name_and_tags() -> None:
    with pytest.raises(KeyError):
        Meter().record("serve_app_page", 1, {"source": "ocr"})
    with pytest.raises(ValueError, match="tagged"):
        Meter().record("serve_app_pages", 1, {"engine": "ocr"})
    assert all(name.startswith("serve_app_") for name in METRICS)


def test_the_grafana_dashboard_asks_only_for_exported_names_and_tags() -> None:
    import json
    import re

    from tests.serve_fixtures import ROOT

    dashboard = json.loads((ROOT / "deploy" / "grafana" / "serve_app.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    asked = set()
    suffix = {"counter": "_total", "gauge": "", "histogram": "_bucket"}
    for expr in exprs:
        for name in re.findall(r"ray_(serve_app_\w+?)(_total|_bucket)?\{", expr):
            metric = METRICS[name[0]]  # KeyError: a panel of a metric nobody records
            assert name[1] == suffix[metric.kind], expr
            grouped = re.findall(r"by \(([^)]*)\)", expr)
            for tag in (t.strip() for g in grouped for t in g.split(",")):
                assert tag in (*metric.tags, "le", "deployment", "replica", "application"), (tag, expr)
            asked.add(metric.name)
    assert asked == set(METRICS)  # and every metric has a panel
