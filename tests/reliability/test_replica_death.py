"""A model replica killed while 16 clients send pages and a job runs: every request ends with 200,
503 + Retry-After or 504 (never a 500, never a hang), Serve starts a replica in its place, /ready
is 200 again, pages are read again, and the job still succeeds with one result."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from scripts.s3_dev import SeaweedFS
from tests.conftest import reads_phototest
from tests.load import Load
from tests.serve_fixtures import (
    answers_200,
    complete_result,
    deploy,
    finished,
    queue_pages,
    small_app_args,
    stored_files,
    wait_for,
    wait_job,
)

APP = "faults"
CLIENTS = 16
JOB_PAGES = 6


@pytest.fixture(scope="module")
def url(base_url: str, s3: SeaweedFS) -> Iterator[str]:
    from ray import serve

    # Short leases and one page a slice: a job is mid-document when a replica dies under it.
    jobs = {"lease_s": 4, "poll_s": 0.5, "slice_pages": 1}
    yield deploy(base_url, APP, small_app_args(s3, ingress={"request_timeout_s": 60}, jobs=jobs))
    serve.delete(APP)


def replicas(deployment: str) -> set[str]:
    import ray

    return {
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if f"{APP}#{deployment}#" in a["name"]
    }


@pytest.mark.parametrize("deployment", ["Recognizer", "Layout"])
def test_a_model_replica_killed_under_load_loses_no_request_and_no_job(
    url: str, s3: SeaweedFS, deployment: str
) -> None:
    import ray

    job_id = queue_pages(url, JOB_PAGES)
    (victim,) = replicas(deployment)
    with Load(url, CLIENTS) as load:
        wait_for(lambda: load.ok_since(0) >= 3, timeout_s=120)
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        killed = time.monotonic()
        wait_for(lambda: len(replicas(deployment) - {victim}) == 1, timeout_s=60)
        wait_for(lambda: answers_200(f"{url}/ready"), timeout_s=60)
        recovered = time.monotonic()
        wait_for(lambda: load.ok_since(recovered) >= 3, timeout_s=120)  # pages are read again
    assert not any(t.is_alive() for t in load.threads), "a client got no answer"
    assert not load.wrong, load.wrong[:5]
    print(
        f"{deployment} killed: ready again after {recovered - killed:.1f} s; "
        f"outcomes {load.counts()}, after the kill {load.counts(since=killed)}"
    )

    done = wait_job(url, job_id, finished, timeout_s=240)
    assert done["status"] == "succeeded", done
    assert done["progress"] == {"pages_done": JOB_PAGES, "pages_total": JOB_PAGES}
    key = done["result"]["key"]
    assert stored_files(s3, key) == complete_result(JOB_PAGES)
    result = httpx.get(done["result"]["json_url"], timeout=10).json()
    assert all(reads_phototest(p["text"]) for p in result["pages"])
