"""The replicas' application metrics, exported by Ray's metrics agent and scraped as Prometheus
scrapes it (jobs' metrics: tests/integration/test_storage.py; a VLM's tokens: test_vlm_serve.py)."""

from __future__ import annotations

from serve_app.client import Client
from serve_app.metrics import engine_family
from tests.conftest import DATA
from tests.serve_fixtures import metric_total, scraped


def test_a_read_page_shows_up_in_prometheus_with_its_replica_tags(base_url: str) -> None:
    with Client(base_url) as c:
        body = c.ocr(DATA / "phototest.png", lang="en")
    engine = engine_family(body["pages"][0]["blocks"][0]["engine"])  # tesseract:eng -> tesseract

    def exported(seen) -> bool:
        return (
            metric_total(
                seen, "ray_serve_app_pages_total", source="ocr", deployment="Ingress", application="ocr"
            )
            >= 1
            and metric_total(seen, "ray_serve_app_regions_total", engine=engine) >= 1
            and metric_total(seen, "ray_serve_app_stage_seconds_count", stage="recognize") >= 1
        )

    seen = scraped(exported)
    assert {labels["stage"] for labels, _ in seen["ray_serve_app_stage_seconds_bucket"]} == {
        "render", "layout", "recognize", "page"
    }  # fmt: skip
    assert all(labels["replica"] for labels, _ in seen["ray_serve_app_pages_total"])
