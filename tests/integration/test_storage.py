"""Stored results and async jobs in a real S3 (SeaweedFS ``weed mini`` on 127.0.0.1) behind the
real ingress: presigned URLs that fetch, answers from the content-hash cache without the engines,
jobs that survive their runner's death, and what happens when S3 goes away."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts.s3_dev import SeaweedFS
from serve_app.schemas import JobView, OcrResult
from tests.conftest import DATA, phototest_tiff, reads_phototest
from tests.serve_fixtures import (
    complete_result,
    deploy,
    finished,
    metric_total,
    queue_pages,
    scraped,
    small_app_args,
    stored_files,
    wait_for,
    wait_job,
)


@pytest.fixture(scope="module")
def url(base_url: str, s3: SeaweedFS) -> Iterator[str]:
    from ray import serve

    # Short leases and one page a slice: a killed runner is replaced within seconds, mid-document.
    args = small_app_args(
        s3,
        jobs={"lease_s": 4, "poll_s": 0.5, "slice_pages": 1},
        storage={"retry_after_s": 7},
        limits={"url_allowlist": ["127.0.0.1"]},  # the test's own file server
    )
    yield deploy(base_url, "stored", args)
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
    assert OcrResult.model_validate(body).storage is not None  # the OpenAPI schema is what is sent
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
    # Page images inline (the web page's): a stored answer with its pages rendered again; the images
    # are in the answer only, never in what is stored.
    drawn = ocr(url, DATA / "phototest.png", store="true", page_images="true")
    assert drawn.headers["x-cache"] == "hit" and drawn.json()["storage"]["key"] == stored["key"]
    assert drawn.json()["pages"][0]["image_data"].startswith("data:image/jpeg;base64,")
    kept = httpx.get(drawn.json()["storage"]["json_url"], timeout=10).json()
    assert "image_data" not in kept["pages"][0] and kept["text"] == drawn.json()["text"]


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


def test_jobs_are_queued_followed_fetched_and_cancelled(url: str) -> None:
    r = httpx.post(
        f"{url}/v1/jobs", files={"file": ("p.tif", phototest_tiff(3))}, data={"lang": "en"}, timeout=30
    )
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued" and job["progress"] == {"pages_done": 0, "pages_total": 3}
    assert r.headers["location"] == f"/stored/v1/jobs/{job['id']}" == job["links"]["self"]
    done = wait_job(url, job["id"], finished)
    assert done["status"] == "succeeded", done
    JobView.model_validate(job)  # the OpenAPI schema is what is sent
    JobView.model_validate(done)
    assert done["progress"]["pages_done"] == 3 and done["error"] is None and done["cache"] == "miss"
    result = httpx.get(done["result"]["json_url"], timeout=10).json()  # presigned, as a client fetches it
    OcrResult.model_validate(result)
    assert result["job_id"] == job["id"] and all(reads_phototest(p["text"]) for p in result["pages"])
    assert [p["image"] for p in result["pages"]] == ["pages/0001.jpg", "pages/0002.jpg", "pages/0003.jpg"]
    images = [httpx.get(u, timeout=10) for u in done["result"]["page_image_urls"]]
    assert len(images) == 3 and all(i.content[:3] == b"\xff\xd8\xff" for i in images)  # JPEG
    # Through the service too, for clients that cannot reach S3.
    assert httpx.get(f"{url}/v1/jobs/{job['id']}/result", timeout=10).json()["pages"] == result["pages"]
    markdown = httpx.get(f"{url}/v1/jobs/{job['id']}/result", params={"format": "markdown"}, timeout=10)
    assert (
        markdown.headers["content-type"].startswith("text/markdown") and markdown.text == result["markdown"]
    )
    page = httpx.get(f"{url}/v1/jobs/{job['id']}/pages/2", timeout=10)
    assert page.headers["content-type"] == "image/jpeg" and page.content == images[1].content
    assert httpx.get(f"{url}/v1/jobs/{job['id']}/pages/4", timeout=10).status_code == 404
    # A finished job cannot be cancelled; unknown and malformed ids are 404s.
    assert httpx.delete(f"{url}/v1/jobs/{job['id']}", timeout=10).status_code == 409
    assert httpx.get(f"{url}/v1/jobs/{'0' * 28}", timeout=10).status_code == 404
    assert httpx.get(f"{url}/v1/jobs/..%2Fresults", timeout=10).status_code == 404

    # The same document with the same options: answered from the stored result.
    r = httpx.post(
        f"{url}/v1/jobs", files={"file": ("p.tif", phototest_tiff(3))}, data={"lang": "en"}, timeout=30
    )
    hit = wait_job(url, r.json()["id"], finished)
    assert hit["status"] == "succeeded" and hit["cache"] == "hit"
    assert hit["result"]["key"] == done["result"]["key"]

    # Cancelled while it waits or runs: it stops, and says so.
    r = httpx.post(f"{url}/v1/jobs", files={"file": ("p.tif", phototest_tiff(8))}, timeout=30)
    cancelled = httpx.delete(f"{url}/v1/jobs/{r.json()['id']}", timeout=10)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    pending = httpx.get(f"{url}/v1/jobs/{r.json()['id']}/result", timeout=10)
    assert pending.status_code == 409 and pending.json()["type"].endswith("/job-conflict")
    assert httpx.get(f"{url}/v1/jobs/{r.json()['id']}/pages/1", timeout=10).status_code == 409


def job_ids(s3: SeaweedFS) -> list[str]:
    """The ids of the jobs whose records are in the test bucket."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name="us-east-1")
    pages = client.get_paginator("list_objects_v2").paginate(Bucket="ocr-results", Prefix="serve-app/jobs/")
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return [key.split("/")[2] for key in keys if key.endswith("/job.json")]


def test_the_cli_submits_follows_fetches_and_cancels_jobs(
    url: str, s3: SeaweedFS, tmp_path: Path, capsys
) -> None:
    import json

    from serve_app import cli

    tif = tmp_path / "three.tif"
    tif.write_bytes(phototest_tiff(3))
    assert cli.main(["--url", url, "jobs", "submit", str(tif), "--lang", "en"]) == 0
    job_id = capsys.readouterr().out.strip()
    assert cli.main(["--url", url, "jobs", "wait", job_id]) == 0
    assert capsys.readouterr().out == "succeeded\n"
    assert cli.main(["--url", url, "jobs", "result", job_id, "--format", "txt", "--out", str(tmp_path)]) == 0
    assert reads_phototest((tmp_path / f"{job_id}.txt").read_text())
    assert cli.main(["--url", url, "jobs", "status", job_id]) == 0
    assert json.loads(capsys.readouterr().out)["progress"] == {"pages_done": 3, "pages_total": 3}
    # A finished job cannot be cancelled: exit 1 and the service's reason on one line.
    assert cli.main(["--url", url, "jobs", "cancel", job_id]) == 1
    assert (
        capsys.readouterr().err
        == f"serve-app: 409 job-conflict: job {job_id} has already succeeded; there is nothing to cancel\n"
    )
    # `ocr --job`: submitted, followed and fetched in one command.
    assert cli.main(["--url", url, "ocr", str(tif), "--job", "--format", "json", "--lang", "en"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert (
        body["job_id"] and len(body["pages"]) == 3 and all(reads_phototest(p["text"]) for p in body["pages"])
    )
    # Ctrl-C on `ocr --job`: the jobs it submitted (two at once) are cancelled, and it exits 130.
    import signal
    import subprocess
    import sys

    long = [tmp_path / "long-1.tif", tmp_path / "long-2.tif"]
    for n, path in enumerate(long):
        # Two documents, two jobs (not one cached result), still being read at the Ctrl-C.
        path.write_bytes(phototest_tiff(60 + n))
    before = set(job_ids(s3))
    cli_path = str(Path(sys.executable).parent / "serve-app")
    # SIGINT's default action restored: a shell's background job (`make test &`) starts with it
    # ignored, Python then installs no handler for it, and the Ctrl-C would never arrive.
    command = ["env", "--default-signal=INT", cli_path, "--url", url, "ocr", *map(str, long), "--job"]
    command += ["--concurrency", "2"]
    running = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(set(job_ids(s3)) - before) == 2, timeout_s=60, every_s=0.2)
        submitted = set(job_ids(s3)) - before
        running.send_signal(signal.SIGINT)
        assert running.wait(timeout=30) == 130
    finally:
        running.kill()
    assert running.stderr is not None and running.stderr.read() == "serve-app: interrupted\n"
    assert {httpx.get(f"{url}/v1/jobs/{job}", timeout=10).json()["status"] for job in submitted} == {
        "cancelled"
    }

    # Jobs counted by the ingress (submitted) and the Jobs replica (how they ended, the cache).
    scraped(
        lambda seen: (
            metric_total(seen, "ray_serve_app_jobs_total", event="submitted", application="stored") >= 2
            and metric_total(seen, "ray_serve_app_jobs_total", event="succeeded", deployment="Jobs") >= 2
            and metric_total(seen, "ray_serve_app_cache_total", result="hit", deployment="Jobs") >= 1
            and "ray_serve_app_jobs_queued" in seen
        )
    )


def test_jobs_read_documents_by_s3_uri_url_and_base64(url: str, s3: SeaweedFS, files: str) -> None:
    import base64

    import boto3

    client = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name="us-east-1")
    client.put_object(Bucket="ocr-results", Key="inputs/scan.tif", Body=phototest_tiff(2))
    png = (DATA / "phototest.png").read_bytes()
    bodies = [
        {"s3_uri": "s3://ocr-results/inputs/scan.tif", "pages": "2"},
        {"url": f"{files}/phototest.png", "layout": False},
        {"file": base64.b64encode(png).decode(), "lang": "ru+en"},
    ]
    submitted = [httpx.post(f"{url}/v1/jobs", json=body, timeout=30) for body in bodies]
    assert [r.status_code for r in submitted] == [202, 202, 202], [r.text for r in submitted]
    for r in submitted:
        done = wait_job(url, r.json()["id"], finished)
        assert done["status"] == "succeeded", done
        assert reads_phototest(httpx.get(f"{url}/v1/jobs/{done['id']}/result", timeout=10).json()["text"])
    assert done["document"]["media_type"] == "image/png"
    first = httpx.get(f"{url}/v1/jobs/{submitted[0].json()['id']}", timeout=10).json()
    assert first["document"]["pages"] == [2]


def test_bad_jobs_are_refused_when_submitted(url: str) -> None:
    r = httpx.post(f"{url}/v1/jobs", files={"file": ("x.bin", b"not a document")}, timeout=30)
    assert r.status_code == 415 and r.headers["content-type"] == "application/problem+json"
    r = httpx.post(
        f"{url}/v1/jobs", files={"file": ("p.tif", phototest_tiff(2))}, data={"pages": "5"}, timeout=30
    )
    assert r.status_code == 400 and r.json()["type"].endswith("/invalid-page-range")
    r = httpx.post(f"{url}/v1/jobs", json={"file": "%%%"}, timeout=30)
    assert r.status_code == 400 and r.json()["type"].endswith("/invalid-base64")


def test_a_job_survives_the_death_of_its_runner_replica_with_exactly_one_result(
    url: str, s3: SeaweedFS
) -> None:
    import ray

    pages = 24  # the runner dies with 22 to go: seconds of reading, not one (10 pages took about 1 s)
    job_id = queue_pages(url, pages)
    wait_job(url, job_id, lambda j: j["progress"]["pages_done"] >= 2 or finished(j))
    runners = [a for a in ray.util.list_named_actors(all_namespaces=True) if "stored#Jobs#" in a["name"]]
    assert len(runners) == 1, runners
    ray.kill(ray.get_actor(runners[0]["name"], namespace=runners[0]["namespace"]))
    done = wait_job(url, job_id, finished)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2  # claimed again by the replica Serve started in its place
    assert done["progress"] == {"pages_done": pages, "pages_total": pages}
    key = done["result"]["key"]
    assert stored_files(s3, key) == complete_result(pages)
    result = httpx.get(done["result"]["json_url"], timeout=10).json()
    assert [p["page"] for p in result["pages"]] == list(range(1, pages + 1))
    assert all(reads_phototest(p["text"]) for p in result["pages"])


def test_without_s3_storing_is_refused_with_503_and_plain_ocr_keeps_working(url: str, s3: SeaweedFS) -> None:
    assert httpx.get(f"{url}/health", timeout=10).json()["storage"] == "ok"
    s3.stop()
    r = ocr(url, DATA / "phototest.png", store="true", lang="en")
    assert r.status_code == 503 and r.headers["retry-after"] == "7", r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/storage-unavailable")
    plain = ocr(url, DATA / "phototest.png", lang="en")
    assert plain.status_code == 200 and "quick brown" in plain.json()["text"]
    job = httpx.post(
        f"{url}/v1/jobs", files={"file": ("p.png", (DATA / "phototest.png").read_bytes())}, timeout=30
    )
    assert job.status_code == 503 and job.headers["retry-after"] == "7"
    assert job.json()["type"].endswith("/storage-unavailable")
    wait_for(lambda: httpx.get(f"{url}/health", timeout=10).json()["storage"] != "ok", timeout_s=15)


def test_store_without_configured_storage_is_a_clear_400(client, files: str) -> None:
    png = (DATA / "phototest.png").read_bytes()
    r = client.post("/v1/ocr", files={"file": ("p.png", png)}, data={"store": "true"})
    assert r.status_code == 400 and r.json()["type"].endswith("/storage-not-configured")
    r = client.post("/v1/jobs", files={"file": ("p.png", png)})
    assert r.status_code == 400 and r.json()["type"].endswith("/storage-not-configured")
    # Without an allowlist, a URL on this machine is refused (SSRF guard), before any fetch.
    r = client.post("/v1/ocr", json={"url": f"{files}/phototest.png"})
    assert r.status_code == 400 and r.json()["type"].endswith("/url-not-allowed")
