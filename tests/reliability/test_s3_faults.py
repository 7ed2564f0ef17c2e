"""S3 stopped and started again while jobs run and results are stored: nothing half-written is
handed out, no job is lost or read twice into two results, and every result is complete."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from scripts.s3_dev import SeaweedFS
from tests.conftest import DATA, reads_phototest
from tests.serve_fixtures import (
    complete_result,
    deploy,
    finished,
    queue_pages,
    small_app_args,
    stored_files,
    wait_for,
    wait_job,
)

APP = "s3faults"
PNG = (DATA / "phototest.png").read_bytes()


@pytest.fixture(scope="module")
def url(base_url: str, s3: SeaweedFS) -> Iterator[str]:
    from ray import serve

    # Short leases, one page a slice, and attempts enough to outlast the outage.
    jobs = {"lease_s": 4, "poll_s": 0.5, "slice_pages": 1, "max_attempts": 6}
    yield deploy(base_url, APP, small_app_args(s3, jobs=jobs, storage={"retry_after_s": 3}))
    serve.delete(APP)


def test_an_s3_outage_during_jobs_and_stored_reads_loses_and_doubles_nothing(url: str, s3: SeaweedFS) -> None:
    jobs = {queue_pages(url, pages): pages for pages in (4, 5)}  # two documents, two jobs, two results
    first = next(iter(jobs))
    wait_job(url, first, lambda j: j["progress"]["pages_done"] >= 1 or finished(j))

    stored: list[httpx.Response] = []
    stop = threading.Event()

    def store_pages() -> None:  # store: true requests through the outage
        with httpx.Client(timeout=120) as client:
            while not stop.is_set():
                r = client.post(
                    f"{url}/v1/ocr", files={"file": ("p.png", PNG)}, data={"store": "true", "lang": "en"}
                )
                stored.append(r)
                stop.wait(0.5)

    storer = threading.Thread(target=store_pages, daemon=True)
    storer.start()
    s3.stop()
    wait_for(lambda: httpx.get(f"{url}/health", timeout=10).json()["storage"] != "ok", timeout_s=30)
    wait_for(lambda: any(r.status_code == 503 for r in stored), timeout_s=60)  # the outage was felt
    s3.start_again()
    wait_for(lambda: httpx.get(f"{url}/health", timeout=10).json()["storage"] == "ok", timeout_s=60)
    wait_for(lambda: stored and stored[-1].status_code == 200, timeout_s=60)
    stop.set()
    storer.join(timeout=150)
    assert not storer.is_alive()

    # Stored reads: a result with its URLs, or 503 + Retry-After; never a 500 or a half answer.
    for r in stored:
        assert r.status_code in (200, 503), r.text
        if r.status_code == 503:
            assert r.headers["retry-after"] == "3" and r.json()["type"].endswith("/storage-unavailable")
        else:
            assert reads_phototest(r.json()["text"]) and r.json()["storage"]["json_url"]
    last = stored[-1].json()["storage"]
    assert httpx.get(last["json_url"], timeout=10).json()["text"] == stored[-1].json()["text"]
    assert stored_files(s3, last["key"]) == complete_result(1)

    # Jobs: each succeeded once, with one complete result.
    keys = set()
    for job_id, pages in jobs.items():
        done = wait_job(url, job_id, finished, timeout_s=300)
        assert done["status"] == "succeeded", done
        assert done["progress"] == {"pages_done": pages, "pages_total": pages}
        key = done["result"]["key"]
        keys.add(key)
        assert stored_files(s3, key) == complete_result(pages)
        result = httpx.get(done["result"]["json_url"], timeout=10).json()
        assert [p["page"] for p in result["pages"]] == list(range(1, pages + 1))
        assert all(reads_phototest(p["text"]) for p in result["pages"])
        print(f"job of {pages} pages: attempts {done['attempts']}")
    assert len(keys) == len(jobs)
