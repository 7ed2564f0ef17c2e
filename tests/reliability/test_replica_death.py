"""A model replica killed while 16 clients send pages and a job runs: every request ends with 200,
503 + Retry-After or 504 (never a 500, never a hang), Serve starts a replica in its place, /ready
is 200 again, pages are read again, and the job still succeeds with one result."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from scripts.s3_dev import SeaweedFS
from tests.conftest import DATA, reads_phototest
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
PAGE = {"file": ("p.png", (DATA / "phototest.png").read_bytes())}
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


class Load:
    """``CLIENTS`` threads sending a page each, one after another, until stopped; each outcome kept."""

    def __init__(self, url: str) -> None:
        self.url, self.stop = url, threading.Event()
        self.outcomes: list[tuple[float, int]] = []  # (when, status)
        self.wrong: list[str] = []
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=120)

    def _client(self) -> None:
        # The client's own timeout is well past the request's deadline (timeout_s): hitting it is a hang.
        with httpx.Client(timeout=120) as client:
            while not self.stop.is_set():
                try:
                    r = client.post(f"{self.url}/v1/ocr", files=PAGE, data={"lang": "en", "timeout_s": "45"})
                except httpx.HTTPError as exc:
                    self.wrong.append(f"no answer: {exc!r}")
                    continue
                self.outcomes.append((time.monotonic(), r.status_code))
                if r.status_code == 503 and not r.headers.get("retry-after"):
                    self.wrong.append(f"503 without Retry-After: {r.text}")
                elif r.status_code == 200 and not reads_phototest(r.json()["text"]):
                    self.wrong.append(f"200 with the wrong text: {r.json()['text'][:200]}")
                elif r.status_code not in (200, 503, 504):
                    self.wrong.append(f"{r.status_code}: {r.text[:500]}")
                if r.status_code != 200:
                    self.stop.wait(0.5)  # a client backing off (Retry-After asks for more)

    def ok_since(self, when: float) -> int:
        return sum(1 for at, status in self.outcomes if at > when and status == 200)


@pytest.mark.parametrize("deployment", ["Recognizer", "Layout"])
def test_a_model_replica_killed_under_load_loses_no_request_and_no_job(
    url: str, s3: SeaweedFS, deployment: str
) -> None:
    import ray

    job_id = queue_pages(url, JOB_PAGES)
    (victim,) = replicas(deployment)
    with Load(url) as load:
        wait_for(lambda: load.ok_since(0) >= 3, timeout_s=120)
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        killed = time.monotonic()
        wait_for(lambda: len(replicas(deployment) - {victim}) == 1, timeout_s=60)
        wait_for(lambda: answers_200(f"{url}/ready"), timeout_s=60)
        recovered = time.monotonic()
        wait_for(lambda: load.ok_since(recovered) >= 3, timeout_s=120)  # pages are read again
    assert not any(t.is_alive() for t in load.threads), "a client got no answer"
    assert not load.wrong, load.wrong[:5]
    after = [status for at, status in load.outcomes if at > killed]
    print(
        f"{deployment} killed: ready again after {recovered - killed:.1f} s; "
        f"outcomes {sorted({s: [o for _, o in load.outcomes].count(s) for s in {200, 503, 504}}.items())}, "
        f"after the kill {sorted({s: after.count(s) for s in set(after)}.items())}"
    )

    done = wait_job(url, job_id, finished, timeout_s=240)
    assert done["status"] == "succeeded", done
    assert done["progress"] == {"pages_done": JOB_PAGES, "pages_total": JOB_PAGES}
    key = done["result"]["key"]
    assert stored_files(s3, key) == complete_result(JOB_PAGES)
    result = httpx.get(done["result"]["json_url"], timeout=10).json()
    assert all(reads_phototest(p["text"]) for p in result["pages"])
