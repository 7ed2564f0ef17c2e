"""Async jobs: state in S3, claimed by runners under leases, so no job lives in a replica's memory.

    queue/<id>                          the job is not finished yet (what runners list)
    jobs/<id>/job.json                  its record, changed only by compare-and-swap on its ETag
    jobs/<id>/input                     the document's bytes
    jobs/<id>/slices/<key>/<a>-<b>.json pages read so far; a job claimed again resumes after them
    results/<key>/...                   the result, shared with stored sync answers (same key)

A runner claims a queued job (or one whose lease ran out) by writing its lease into the record
over the ETag it read; of two runners, one wins. It renews the lease while it works, and stops
when the record says cancelled or shows another owner. Leases are wall-clock times: runners'
clocks must agree to well within ``lease_s`` (NTP does). Results are content-addressed, so a job
read twice writes the same objects twice, never two results.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .assemble import result_body
from .config import AppArgs
from .errors import DeadlineExceeded, NotFound, ServeAppError, StorageUnavailable
from .pipeline import Options
from .service import DocumentService, Engines, Opened, result_key
from .storage import Conflict, ResultStore, Storage

logger = logging.getLogger("ray.serve.serve_app.jobs")

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED = ("succeeded", "failed", "cancelled")
_JOB_ID = re.compile(r"^[0-9a-f]{28}$")
# A queue marker without a record this old is a submission that died half-way.
ORPHAN_MARKER_S = 300.0


def new_job_id() -> str:
    """Time-ordered (so the queue lists oldest first), with 64 random bits."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(8)}"


class Lease(BaseModel):
    owner: str
    until: float


class JobRecord(BaseModel):
    # A field a newer version added does not stop an older runner from reading the record.
    model_config = ConfigDict(extra="ignore")

    id: str
    status: JobStatus = "queued"
    request_id: str | None = None
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = None
    # The document and how it is to be read (``pages`` 0-based, as selected at submission).
    media_type: str
    page_count: int
    pages: list[int]
    dpi: int | None
    layout: bool
    lang: str
    pages_done: int = 0
    result_key: str | None = None
    cache: Literal["hit", "miss"] | None = None
    error: dict[str, Any] | None = None
    last_error: dict[str, Any] | None = None
    lease: Lease | None = None
    not_before: float = 0.0
    attempts: int = 0

    @property
    def options(self) -> Options:
        return Options(None, self.dpi, self.layout, self.lang)

    def change(self, **update: Any) -> JobRecord:
        return self.model_copy(update={"updated_at": time.time(), **update})

    def finish(self, status: JobStatus, retention_s: float, **update: Any) -> JobRecord:
        now = time.time()
        return self.change(status=status, finished_at=now, expires_at=now + retention_s, lease=None, **update)


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def job_view(record: JobRecord, urls: dict[str, Any] | None, base: str) -> dict[str, Any]:
    """What ``GET /v1/jobs/{id}`` answers."""
    return {
        "id": record.id,
        "status": record.status,
        "progress": {"pages_done": record.pages_done, "pages_total": len(record.pages)},
        "document": {
            "media_type": record.media_type,
            "page_count": record.page_count,
            "pages": [i + 1 for i in record.pages],
        },
        "created_at": _iso(record.created_at),
        "started_at": _iso(record.started_at),
        "finished_at": _iso(record.finished_at),
        "expires_at": _iso(record.expires_at),
        "attempts": record.attempts,
        "cache": record.cache,
        "result": urls,
        "error": record.error,
        "links": {"self": f"{base}/v1/jobs/{record.id}", "result": f"{base}/v1/jobs/{record.id}/result"},
    }


class JobStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @staticmethod
    def _record_key(job_id: str) -> str:
        if not _JOB_ID.match(job_id):  # also keeps odd ids out of the S3 keys
            raise NotFound(f"no job {job_id[:64]!r}")
        return f"jobs/{job_id}/job.json"

    async def submit(self, data: bytes, record: JobRecord) -> None:
        """Input first and record last: a runner never sees a record without its input, and a
        submission that dies half-way leaves only a marker, which runners drop."""
        await self.storage.put(f"jobs/{record.id}/input", data, "application/octet-stream")
        await self.storage.put(f"queue/{record.id}", b"", "text/plain")
        await self.storage.put(
            self._record_key(record.id),
            record.model_dump_json().encode(),
            "application/json",
            if_none_match=True,
        )

    async def read(self, job_id: str) -> tuple[JobRecord, str] | None:
        found = await self.storage.get_tagged(self._record_key(job_id))
        return None if found is None else (JobRecord.model_validate_json(found[0]), found[1])

    async def existing(self, job_id: str) -> tuple[JobRecord, str]:
        """``read``, or NotFound for a job that is not (or no longer) there."""
        found = await self.read(job_id)
        if found is None:
            raise NotFound(f"no job {job_id!r} (unknown, or expired and deleted)")
        return found

    async def get(self, job_id: str) -> JobRecord:
        return (await self.existing(job_id))[0]

    async def write(self, record: JobRecord, etag: str) -> str:
        """Replace the record if it is still the version ``etag`` (``Conflict`` otherwise)."""
        body = record.model_dump_json().encode()
        return await self.storage.put(self._record_key(record.id), body, "application/json", if_match=etag)

    async def input(self, job_id: str) -> bytes | None:
        return await self.storage.get(f"jobs/{job_id}/input")

    async def queued(self) -> list[tuple[str, float]]:
        """(id, when queued) of every unfinished job, oldest first (objects that are not job
        markers, such as a folder placeholder some S3 tools write, are passed over)."""
        found = [(name.removeprefix("queue/"), t) for name, t in await self.storage.list("queue/")]
        return [(job_id, t) for job_id, t in found if _JOB_ID.match(job_id)]

    async def unqueue(self, job_id: str) -> None:
        await self.storage.delete([f"queue/{job_id}"])

    async def cancel(self, job_id: str, retention_s: float) -> tuple[JobRecord, bool]:
        """(the record, whether this call cancelled it): a finished job is left as it is."""
        while True:
            record, etag = await self.existing(job_id)
            if record.status in FINISHED:
                return record, False
            cancelled = record.finish("cancelled", retention_s)
            try:
                await self.write(cancelled, etag)
            except Conflict:
                continue  # its runner wrote meanwhile: look again
            await self.unqueue(job_id)
            return cancelled, True

    def _slice_key(self, job_id: str, result: str, first: int, count: int) -> str:
        """Named by its range: a runner slicing otherwise (another slice_pages) reads it afresh."""
        return f"jobs/{job_id}/slices/{result}/{first:05d}-{first + count - 1:05d}.json"

    async def load_slice(
        self, job_id: str, result: str, first: int, count: int
    ) -> list[dict[str, Any]] | None:
        data = await self.storage.get(self._slice_key(job_id, result, first, count))
        return None if data is None else list(json.loads(data))

    async def save_slice(self, job_id: str, result: str, first: int, pages: list[dict[str, Any]]) -> None:
        body = json.dumps(pages, ensure_ascii=False).encode()
        await self.storage.put(self._slice_key(job_id, result, first, len(pages)), body, "application/json")

    async def drop_slices(self, job_id: str) -> None:
        await self.storage.delete([name for name, _ in await self.storage.list(f"jobs/{job_id}/slices/")])

    async def sweep(self, retention_s: float, now: float | None = None) -> int:
        """Delete finished jobs past their expiry, with their input, and leftovers of submissions
        that died half-way. Returns how many jobs went."""
        now = time.time() if now is None else now
        gone = 0
        for job_id, objects in (await self.storage.list_groups("jobs/")).items():
            if max(t for _, t in objects) >= now - retention_s:
                continue  # written lately: not expired whatever the record says
            found = await self.read(job_id) if _JOB_ID.match(job_id) else None
            if found is not None and (found[0].status not in FINISHED or (found[0].expires_at or 0) > now):
                continue
            await self.storage.delete([name for name, _ in objects] + [f"queue/{job_id}"])
            gone += 1
        return gone


class LeaseLost(Exception):
    """The job was cancelled, or another runner holds it now: stop working on it."""


@dataclass
class _Claim:
    record: JobRecord
    etag: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stopped: str | None = None
    finishing: bool = False  # its outcome is written: the watcher has nothing more to guard


class JobRunner:
    """Claims queued jobs and reads them, ``jobs.max_running`` at a time, over ``engines``."""

    def __init__(self, args: AppArgs, storage: Storage, engines: Engines) -> None:
        assert args.storage is not None
        self._args, self._conf, self._retention_s = args, args.jobs, args.storage.retention_s
        self.store, self.results = JobStore(storage), ResultStore(storage)
        self._engines = engines
        self._service = DocumentService(args, engines, self.results)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._running: dict[str, asyncio.Task[None]] = {}
        self._claims: dict[str, _Claim] = {}
        self._wake = asyncio.Event()
        self._swept = 0.0
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    async def run_forever(self) -> None:
        """Until ``stop``: no error of one round (S3 down, an odd object in the queue) ends it."""
        while not self._stopping:
            self._wake.clear()
            try:
                await self.step()
            except StorageUnavailable as exc:
                logger.warning("job queue unreachable: %s", exc.detail)
            except Exception:
                logger.exception("job loop round failed; trying again in %g s", self._conf.poll_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._conf.poll_s)

    def stop(self) -> None:
        """Claim nothing more; ``run_forever`` returns after its round (then ``release``)."""
        self._stopping = True
        self._wake.set()

    async def step(self) -> None:
        """One round: sweep when due, then claim what there is room for."""
        if time.monotonic() - self._swept > self._conf.sweep_s or not self._swept:
            self._swept = time.monotonic()
            jobs = await self.store.sweep(self._retention_s)
            results = await self.results.sweep(self._retention_s)
            if jobs or results:
                logger.info("retention: deleted %d jobs and %d results", jobs, results)
        if len(self._running) >= self._conf.max_running or self._stopping:
            return
        if (await self._engines.health()).status != "ready":
            return  # claimed now, the job would only wait, or fail its attempt
        for job_id, queued_at in await self.store.queued():
            if len(self._running) >= self._conf.max_running or self._stopping:
                break
            if job_id not in self._running:
                claim = await self._claim(job_id, queued_at)
                if claim is not None:
                    self._claims[job_id] = claim
                    self._running[job_id] = asyncio.create_task(self._run(claim))

    async def idle(self) -> None:
        """Wait until no job is being worked on here (tests)."""
        while self._running:
            await asyncio.wait(list(self._running.values()))

    async def release(self) -> None:
        """Hand every running job back to the queue at once (graceful stop): the next runner
        need not wait for the leases to run out, and the attempt does not count."""
        for job_id, task in list(self._running.items()):
            claim = self._claims.get(job_id)
            if claim is None:  # finished meanwhile
                continue
            claim.stopped = "released"
            task.cancel()
            try:
                await self._update(claim, _released)
            except (LeaseLost, ServeAppError) as exc:
                logger.warning("job %s not released (its lease will run out): %s", job_id, exc)
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _claim(self, job_id: str, queued_at: float) -> _Claim | None:
        now = time.time()
        found = await self.store.read(job_id)
        if found is None:
            if now - queued_at > ORPHAN_MARKER_S:
                await self.store.unqueue(job_id)
            return None
        record, etag = found
        if record.status in FINISHED:
            await self.store.unqueue(job_id)  # its runner stopped between the two writes
            return None
        if record.not_before > now or (record.lease is not None and record.lease.until > now):
            return None
        if record.attempts >= self._conf.max_attempts:
            failed = record.finish("failed", self._retention_s, error=record.last_error or _gave_up(record))
            try:
                await self.store.write(failed, etag)
                await self.store.unqueue(job_id)
            except Conflict:
                pass
            return None
        claimed = record.change(
            status="running",
            lease=self._lease(),
            attempts=record.attempts + 1,
            started_at=record.started_at or now,
        )
        try:
            etag = await self.store.write(claimed, etag)
        except Conflict:
            return None  # another runner was quicker
        logger.info("job %s claimed (attempt %d)", job_id, claimed.attempts)
        return _Claim(claimed, etag)

    def _lease(self) -> Lease:
        return Lease(owner=self.owner, until=time.time() + self._conf.lease_s)

    def _check_held(self, record: JobRecord) -> Lease:
        """This runner's lease on the record; ``LeaseLost`` once cancelled or taken over."""
        if record.status != "running" or record.lease is None or record.lease.owner != self.owner:
            raise LeaseLost(f"job {record.id} is {record.status}, held by {record.lease}")
        return record.lease

    async def _update(self, claim: _Claim, change: Callable[[JobRecord], JobRecord]) -> JobRecord:
        """Change the record while this runner holds the job; ``LeaseLost`` once it does not."""
        async with claim.lock:
            while True:
                current = claim.record
                self._check_held(current)
                new = change(current)
                try:
                    claim.etag = await self.store.write(new, claim.etag)
                    claim.record = new
                    return new
                except Conflict:
                    found = await self.store.read(current.id)
                    if found is None:
                        raise LeaseLost(f"job {current.id} was deleted") from None
                    claim.record, claim.etag = found

    async def _watch(self, claim: _Claim, work: asyncio.Task[None]) -> None:
        """Renew the lease; stop the work once the job is cancelled or taken over."""
        while not work.done() and not claim.finishing:
            await asyncio.sleep(self._conf.poll_s)
            if claim.finishing:
                return
            try:
                async with claim.lock:
                    found = await self.store.read(claim.record.id)
                    if found is not None:
                        claim.record, claim.etag = found
                lease = self._check_held(claim.record)
                if lease.until - time.time() < self._conf.lease_s / 2:
                    await self._update(claim, lambda r: r.change(lease=self._lease()))
            except LeaseLost as exc:
                if not claim.finishing:  # its own outcome, just written, is no reason to stop
                    claim.stopped = str(exc)
                    work.cancel()
                return
            except StorageUnavailable as exc:
                logger.warning("job %s: lease not renewed: %s", claim.record.id, exc.detail)
            except Exception:
                logger.exception("job %s: lease check failed", claim.record.id)

    async def _run(self, claim: _Claim) -> None:
        job_id = claim.record.id
        work = asyncio.create_task(self._work(claim))
        watch = asyncio.create_task(self._watch(claim, work))
        try:
            await work
            logger.info("job %s %s", job_id, claim.record.status)
        except asyncio.CancelledError:
            if claim.stopped is None:
                raise  # this runner is stopping: the lease runs out and another claims the job
            logger.info("job %s stopped here: %s", job_id, claim.stopped)
        except LeaseLost as exc:
            logger.info("job %s stopped here: %s", job_id, exc)
        except Exception as exc:
            await self._failed(claim, exc)
        finally:
            watch.cancel()
            self._running.pop(job_id, None)
            self._claims.pop(job_id, None)

    async def _failed(self, claim: _Claim, exc: Exception) -> None:
        transient = isinstance(exc, ServeAppError) and exc.status in (503, 504)
        if not isinstance(exc, ServeAppError):
            logger.exception("job %s failed", claim.record.id, exc_info=exc)
            exc = ServeAppError(f"internal error in job {claim.record.id}; see the Jobs replica's log")
        problem = exc.problem(claim.record.request_id)
        try:
            if transient and claim.record.attempts < self._conf.max_attempts:
                backoff = min(60.0, 2.0**claim.record.attempts)
                logger.warning("job %s: %s; queued again in %.0f s", claim.record.id, exc, backoff)
                change = partial(_requeue, problem=problem, not_before=time.time() + backoff)
                await self._update(claim, change)
            else:
                logger.warning("job %s failed: %s", claim.record.id, exc)
                await self._update(claim, lambda r: r.finish("failed", self._retention_s, error=problem))
                claim.finishing = True
                await self.store.unqueue(claim.record.id)
        except (LeaseLost, StorageUnavailable) as lost:
            logger.warning("job %s: outcome not written (%s); its lease will run out", claim.record.id, lost)

    async def _work(self, claim: _Claim) -> None:
        record = claim.record
        data = await self.store.input(record.id)
        if data is None:
            raise ServeAppError(f"the input of job {record.id} is missing from storage")
        started = time.perf_counter()
        async with self._service.opened(data, record.dpi, record.pages) as opened:
            models = await self._service.ready_models()
            key = result_key(data, record.pages, opened.doc.dpi, record.options, models)
            if await self.results.load(key, touch=True) is not None:
                await self._succeeded(claim, key, "hit")
                return
            pages = await self._read_slices(claim, opened, key)
        total_ms = round((time.perf_counter() - started) * 1000, 1)
        document = opened.doc.describe(record.pages)
        body = result_body(pages, record.request_id, models, document, {"total": total_ms}, job_id=record.id)
        await self.results.save(key, body)
        await self._succeeded(claim, key, "miss")

    async def _read_slices(self, claim: _Claim, opened: Opened, key: str) -> list[dict[str, Any]]:
        record, size = claim.record, self._conf.slice_pages
        pages: list[dict[str, Any]] = []
        for first in range(0, len(record.pages), size):
            indices = record.pages[first : first + size]
            done = await self.store.load_slice(record.id, key, first, len(indices))
            if done is None:
                done = await self._read_slice(opened, indices, record.options, key)
                await self.store.save_slice(record.id, key, first, done)
            pages += done
            await self._update(claim, partial(_progress, pages_done=len(pages)))
        return pages

    async def _read_slice(
        self, opened: Opened, indices: list[int], options: Options, key: str
    ) -> list[dict[str, Any]]:
        """A slice has the time a sync request has; past it, the job is tried again later."""
        limit = self._args.ingress.request_timeout_s
        try:
            async with asyncio.timeout(limit):
                return await self._service.read_pages(opened, indices, options, len(indices), key)
        except TimeoutError:
            raise DeadlineExceeded(
                f"pages {indices[0] + 1}-{indices[-1] + 1} not read within {limit:g} s"
            ) from None

    async def _succeeded(self, claim: _Claim, key: str, cache: Literal["hit", "miss"]) -> None:
        total = len(claim.record.pages)
        await self._update(
            claim,
            lambda r: r.finish("succeeded", self._retention_s, result_key=key, cache=cache, pages_done=total),
        )
        claim.finishing = True
        await self.store.unqueue(claim.record.id)
        await self.store.drop_slices(claim.record.id)


def _progress(record: JobRecord, pages_done: int) -> JobRecord:
    return record.change(pages_done=pages_done)


def _released(record: JobRecord) -> JobRecord:
    return record.change(status="queued", lease=None, attempts=record.attempts - 1)


def _requeue(record: JobRecord, problem: dict[str, Any], not_before: float) -> JobRecord:
    return record.change(status="queued", lease=None, last_error=problem, not_before=not_before)


def _gave_up(record: JobRecord) -> dict[str, Any]:
    return ServeAppError(
        f"job {record.id} was claimed {record.attempts} times and never finished (its runners stopped)"
    ).problem(record.request_id)
