"""Job runners over a real S3 (SeaweedFS) and the real CPU engines, without Ray: claims under
leases, a runner that dies mid-job and one that takes over and resumes, cancellation, retention."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from scripts.s3_dev import SeaweedFS
from serve_app.config import AppArgs, load_args
from serve_app.job_runner import JobRunner
from serve_app.job_store import JobStore
from serve_app.jobs import JobRecord, new_job_id
from serve_app.storage import Storage
from tests.conftest import phototest_tiff, reads_phototest
from tests.unit.engines_fixture import EngineBackend


@pytest.fixture(scope="module")
def engines() -> Iterator[tuple[object, object]]:
    from serve_app.engines import build_layout, build_recognizer

    args = AppArgs()
    layout, recognizer = build_layout(args.layout), build_recognizer(args.recognizer)
    layout.start()
    recognizer.start()
    yield layout, recognizer
    recognizer.shutdown()


@pytest.fixture
def args(s3: SeaweedFS) -> AppArgs:
    return load_args(
        {
            "storage": {"endpoint_url": s3.endpoint_url, "bucket": "ocr-results", "timeout_s": 3},
            "jobs": {"lease_s": 2, "poll_s": 0.2, "slice_pages": 1},
        },
        environ={},
    )


def runner(args: AppArgs, engines) -> JobRunner:  # type: ignore[no-untyped-def]
    assert args.storage is not None
    return JobRunner(args, Storage(args.storage), EngineBackend(*engines))


async def submit(store: JobStore, data: bytes, pages: int) -> str:
    now = time.time()
    record = JobRecord(
        id=new_job_id(),
        created_at=now,
        updated_at=now,
        media_type="image/tiff",
        page_count=pages,
        pages=list(range(pages)),
        dpi=None,
        layout=True,
        lang="en",
    )
    await store.submit(data, record)
    return record.id


async def wait_until(condition, timeout_s: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_one_claim_wins_and_the_job_is_read_page_by_page(args: AppArgs, engines) -> None:  # type: ignore[no-untyped-def]
    a, b = runner(args, engines), runner(args, engines)
    job_id = await submit(a.store, phototest_tiff(2), 2)
    # Two runners look at once; S3's conditional write lets one claim the job.
    await asyncio.gather(a.step(), b.step())
    assert len(a._running) + len(b._running) == 1
    await asyncio.gather(a.idle(), b.idle())
    record = await a.store.get(job_id)
    assert record.status == "succeeded" and record.pages_done == 2 and record.cache == "miss"
    assert record.result_key is not None
    body = await a.results.load(record.result_key)
    assert body is not None and body["job_id"] == job_id
    assert [p["page"] for p in body["pages"]] == [1, 2]
    assert all(reads_phototest(p["text"]) for p in body["pages"])
    stored = [name for name, _ in await a.store.storage.list(f"results/{record.result_key}/")]
    assert sorted(stored) == [
        f"results/{record.result_key}/{n}"
        for n in ("pages/0001.jpg", "pages/0002.jpg", "result.json", "result.md")
    ]
    assert job_id not in [i for i, _ in await a.store.queued()]
    assert await a.store.storage.list(f"jobs/{job_id}/slices/") == []
    # The same document again is answered from the stored result.
    again = await submit(a.store, phototest_tiff(2), 2)
    await a.step()
    await a.idle()
    hit = await a.store.get(again)
    assert hit.status == "succeeded" and hit.cache == "hit" and hit.result_key == record.result_key
    assert record.attempts == 1 and hit.attempts == 1


async def test_a_stale_write_of_a_record_is_refused(args: AppArgs) -> None:
    from serve_app.storage import Conflict

    assert args.storage is not None
    store = JobStore(Storage(args.storage))
    job_id = await submit(store, b"II*\x00", 1)
    record, etag = await store.read(job_id)  # type: ignore[misc]
    await store.write(record.change(lang="ru"), etag)
    with pytest.raises(Conflict):
        await store.write(record.change(lang="de"), etag)
    assert (await store.get(job_id)).lang == "ru"
    await store.cancel(job_id, retention_s=60)


async def test_a_runner_that_dies_is_replaced_and_the_job_resumes_after_its_last_slice(
    args: AppArgs, engines
) -> None:  # type: ignore[no-untyped-def]
    dying, taking_over = runner(args, engines), runner(args, engines)
    job_id = await submit(dying.store, phototest_tiff(3), 3)
    await dying.step()

    async def one_page_done() -> bool:
        return (await dying.store.get(job_id)).pages_done >= 1

    await wait_until(one_page_done)
    for task in dying._running.values():  # dies: no release, no last write
        task.cancel()
    await asyncio.sleep(0)
    record = await dying.store.get(job_id)
    assert record.status == "running" and record.lease is not None
    assert record.lease.owner == dying.owner
    # Its lease still holds: nobody takes the job over before it runs out.
    await taking_over.step()
    assert not taking_over._running
    await asyncio.sleep(max(0.0, record.lease.until - time.time()) + 0.1)
    await taking_over.step()
    assert taking_over._running
    await taking_over.idle()
    done = await dying.store.get(job_id)
    assert done.status == "succeeded" and done.attempts == 2 and done.pages_done == 3
    # Resumed: the pages read before the death were not read again.
    recognizer = taking_over._engines.recognizer  # type: ignore[attr-defined]
    assert recognizer.calls <= 3 - record.pages_done
    body = await dying.results.load(done.result_key or "")
    assert body is not None and [p["page"] for p in body["pages"]] == [1, 2, 3]


async def test_cancel_stops_the_runner_and_a_finished_job_is_left_alone(args: AppArgs, engines) -> None:  # type: ignore[no-untyped-def]
    a = runner(args, engines)
    job_id = await submit(a.store, phototest_tiff(4), 4)
    await a.step()
    assert job_id in a._running
    record, cancelled = await a.store.cancel(job_id, retention_s=60)
    assert cancelled and record.status == "cancelled" and record.expires_at is not None
    await a.idle()
    final = await a.store.get(job_id)
    assert final.status == "cancelled" and final.pages_done < 4  # stopped at its next look
    assert job_id not in [i for i, _ in await a.store.queued()]
    again, cancelled = await a.store.cancel(job_id, retention_s=60)
    assert not cancelled and again.status == "cancelled"


async def test_retention_deletes_finished_jobs_and_old_results_only(args: AppArgs, engines) -> None:  # type: ignore[no-untyped-def]
    a = runner(args, engines)
    finished = await submit(a.store, phototest_tiff(1), 1)
    await a.step()
    await a.idle()
    key = (await a.store.get(finished)).result_key
    waiting = await submit(a.store, b"II*\x00 not read yet", 1)
    later = time.time() + 8 * 24 * 3600  # past the default retention of 7 days
    assert await a.store.sweep(7 * 24 * 3600, now=later) >= 1
    assert await a.results.sweep(7 * 24 * 3600, now=later) >= 1
    assert await a.store.read(finished) is None
    assert await a.store.storage.list(f"results/{key}/") == []
    assert (await a.store.get(waiting)).status == "queued"  # not finished: kept
    # Nothing is deleted before its time.
    assert await a.results.sweep(7 * 24 * 3600) == 0
    await a.store.cancel(waiting, retention_s=60)


async def test_a_runner_stopped_gracefully_hands_its_jobs_back_at_once(args: AppArgs, engines) -> None:  # type: ignore[no-untyped-def]
    stopping, next_one = runner(args, engines), runner(args, engines)
    job_id = await submit(stopping.store, phototest_tiff(3), 3)
    await stopping.step()
    assert job_id in stopping._running
    await stopping.release()
    handed_back = await stopping.store.get(job_id)
    assert handed_back.status == "queued" and handed_back.lease is None and handed_back.attempts == 0
    await next_one.step()  # no lease to wait for
    await next_one.idle()
    done = await next_one.store.get(job_id)
    assert done.status == "succeeded" and done.attempts == 1


async def test_a_document_that_cannot_be_read_fails_the_job_once_with_its_problem(
    args: AppArgs, engines
) -> None:  # type: ignore[no-untyped-def]
    a = runner(args, engines)
    job_id = await submit(a.store, b"II*\x00 a TIFF header and nothing else", 1)
    await a.step()
    await a.idle()
    failed = await a.store.get(job_id)
    assert failed.status == "failed" and failed.attempts == 1  # not retried: it cannot get better
    assert failed.error is not None and failed.error["status"] == 422
    assert failed.error["type"].endswith("/unprocessable-document") and failed.error["detail"]
    assert job_id not in [i for i, _ in await a.store.queued()]


async def test_objects_in_the_queue_that_are_not_jobs_are_passed_over(args: AppArgs, engines) -> None:  # type: ignore[no-untyped-def]
    a = runner(args, engines)
    await a.store.storage.put("queue/", b"", "application/x-directory")  # an S3 tool's folder
    await a.store.storage.put("queue/not-a-job", b"", "text/plain")
    job_id = await submit(a.store, phototest_tiff(1), 1)
    await a.step()
    await a.idle()
    assert (await a.store.get(job_id)).status == "succeeded"
    await a.store.storage.delete(["queue/", "queue/not-a-job"])


def test_a_job_is_seen_and_cancelled_by_the_key_that_submitted_it_only(args: AppArgs, engines) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from serve_app.api import create_api
    from tests.conftest import DATA

    mine, theirs = ("m" * 16 + "-submitter", "t" * 16 + "-another-one")
    keyed = args.model_copy(
        update={"auth": load_args({"auth": {"api_keys": [mine, theirs]}}, environ={}).auth}
    )
    c = TestClient(create_api(keyed, EngineBackend(*engines)))
    as_me, as_them = {"X-Api-Key": mine}, {"Authorization": f"Bearer {theirs}"}
    files = {"file": ("p.png", (DATA / "phototest.png").read_bytes())}
    job = c.post("/v1/jobs", files=files, headers=as_me)
    assert job.status_code == 202, job.text
    job_id = job.json()["id"]
    assert c.get(f"/v1/jobs/{job_id}", headers=as_me).json()["status"] == "queued"
    unknown = c.get(f"/v1/jobs/{'0' * 28}", headers=as_them).json()["detail"]
    for method, path in [("get", ""), ("get", "/result"), ("delete", "")]:
        r = getattr(c, method)(f"/v1/jobs/{job_id}{path}", headers=as_them)
        # Another key's job is as unknown as none: not even its existence is told.
        assert r.status_code == 404 and r.json()["detail"] == unknown.replace("0" * 28, job_id), r.text
    assert c.delete(f"/v1/jobs/{job_id}", headers=as_me).json()["status"] == "cancelled"


def test_a_job_keeps_the_model_it_was_submitted_with(args: AppArgs, engines) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from serve_app.api import create_api
    from tests.conftest import DATA

    c = TestClient(create_api(args, EngineBackend(*engines)))
    files = {"file": ("p.png", (DATA / "phototest.png").read_bytes())}
    job = c.post("/v1/jobs", files=files, data={"model": "cpu"})
    assert job.status_code == 202, job.text
    unknown = c.post("/v1/jobs", files=files, data={"model": "tiny"})
    assert unknown.status_code == 400 and unknown.json()["detail"] == "no model 'tiny'; the models are: cpu"
    default = c.post("/v1/jobs", files=files).json()["id"]
    store = runner(args, engines).store
    assert asyncio.run(store.get(job.json()["id"])).model == "cpu"
    assert asyncio.run(store.get(default)).model == "cpu"  # the first, named when it was submitted
