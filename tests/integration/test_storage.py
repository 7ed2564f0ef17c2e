"""Stored results in a real S3 (SeaweedFS ``weed mini`` on 127.0.0.1) behind the real ingress:
presigned URLs that fetch, answers from the content-hash cache without the engines, and what
happens when S3 goes away."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts.s3_dev import SeaweedFS
from tests.conftest import DATA
from tests.integration.conftest import answers_200, cpu_args, wait_for

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "serve-app-test", "AWS_SECRET_ACCESS_KEY": "serve-app-test"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[SeaweedFS]:
    server = SeaweedFS(tmp_path_factory.mktemp("s3"), bucket="ocr-results")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def url(base_url: str, s3: SeaweedFS) -> Iterator[str]:
    from ray import serve

    from serve_app.app import build_app

    small = {"ray_actor_options": {"num_cpus": 0.05}, "num_replicas": 1}
    ingress = {
        "ray_actor_options": {"num_cpus": 0.05, "runtime_env": {"env_vars": CREDENTIALS}},
        "num_replicas": 1,
    }
    args = cpu_args(
        layout={"deployment": small}, recognizer={"deployment": small}, ingress={"deployment": ingress}
    )
    args["storage"] = {
        "endpoint_url": s3.endpoint_url,
        "bucket": "ocr-results",
        "timeout_s": 2,
        "retry_after_s": 7,
    }
    args["limits"] = {**args["limits"], "url_allowlist": ["127.0.0.1"]}  # the test's own file server
    serve.run(build_app(args), name="stored", route_prefix="/stored")
    wait_for(lambda: answers_200(f"{base_url}/stored/ready"), timeout_s=180)
    yield f"{base_url}/stored"
    serve.delete("stored")


def ocr(url: str, path: Path, **fields: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/ocr", files={"file": (path.name, path.read_bytes())}, data=fields, timeout=120
    )


def test_stored_results_come_back_as_presigned_urls_and_from_the_cache(url: str) -> None:
    first = ocr(url, DATA / "phototest.png", store="true")
    assert first.status_code == 200, first.text
    assert first.headers["x-cache"] == "miss"
    body = first.json()
    stored = body["storage"]
    assert len(stored["key"]) == 64
    fetched = httpx.get(stored["json_url"], timeout=10)  # a plain GET, as a client would
    assert fetched.status_code == 200 and fetched.json()["text"] == body["text"]
    assert httpx.get(stored["markdown_url"], timeout=10).text == body["markdown"]

    again = ocr(url, DATA / "phototest.png", store="true")
    assert again.status_code == 200 and again.headers["x-cache"] == "hit"
    hit = again.json()
    # The stored answer, not a new reading: the engines' own timings are the first request's.
    assert hit["pages"] == body["pages"] and hit["timings_ms"] == body["timings_ms"]
    assert hit["request_id"] != body["request_id"] and hit["storage"]["key"] == stored["key"]
    # Other options are another result.
    other = ocr(url, DATA / "phototest.png", store="true", lang="en")
    assert other.headers["x-cache"] == "miss" and other.json()["storage"]["key"] != stored["key"]


@pytest.fixture(scope="module")
def files() -> Iterator[str]:
    """A plain HTTP file server for tests/data on 127.0.0.1."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(DATA)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_documents_by_url_and_by_s3_uri(url: str, s3: SeaweedFS, files: str) -> None:
    import boto3

    r = httpx.post(f"{url}/v1/ocr", json={"url": f"{files}/phototest.png", "lang": "en"}, timeout=120)
    assert r.status_code == 200, r.text
    assert "quick brown" in r.json()["text"]
    missing = httpx.post(f"{url}/v1/ocr", json={"url": f"{files}/nothing.png"}, timeout=30)
    assert missing.status_code == 422 and missing.json()["type"].endswith("/unfetchable-url")

    keys = {"aws_access_key_id": "serve-app-test", "aws_secret_access_key": "serve-app-test"}
    client = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name="us-east-1", **keys)
    pdf = (DATA / "draft_federal_law_personal_data_p1.pdf").read_bytes()
    client.put_object(Bucket="ocr-results", Key="inputs/law.pdf", Body=pdf)
    r = httpx.post(f"{url}/v1/ocr", json={"s3_uri": "s3://ocr-results/inputs/law.pdf"}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["document"]["media_type"] == "application/pdf" and "персональн" in body["text"].lower()
    gone = httpx.post(f"{url}/v1/ocr", json={"s3_uri": "s3://ocr-results/inputs/none.pdf"}, timeout=30)
    assert gone.status_code == 404 and gone.json()["type"].endswith("/not-found")
    both = httpx.post(f"{url}/v1/ocr", json={"s3_uri": "s3://a/b", "url": f"{files}/x"}, timeout=30)
    assert both.status_code == 400


def test_without_s3_storing_is_refused_with_503_and_plain_ocr_keeps_working(url: str, s3: SeaweedFS) -> None:
    assert httpx.get(f"{url}/health", timeout=10).json()["storage"] == "ok"
    s3.stop()
    r = ocr(url, DATA / "phototest.png", store="true", lang="en")
    assert r.status_code == 503 and r.headers["retry-after"] == "7"
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/storage-unavailable")
    plain = ocr(url, DATA / "phototest.png", lang="en")
    assert plain.status_code == 200 and "quick brown" in plain.json()["text"]
    wait_for(lambda: httpx.get(f"{url}/health", timeout=10).json()["storage"] != "ok", timeout_s=15)


def test_store_without_configured_storage_is_a_clear_400(client, files: str) -> None:
    png = (DATA / "phototest.png").read_bytes()
    r = client.post("/v1/ocr", files={"file": ("p.png", png)}, data={"store": "true"})
    assert r.status_code == 400 and "storage" in r.json()["detail"]
    # Without an allowlist, a URL on this machine is refused (SSRF guard), before any fetch.
    r = client.post("/v1/ocr", json={"url": f"{files}/phototest.png"})
    assert r.status_code == 400 and r.json()["type"].endswith("/url-not-allowed")
