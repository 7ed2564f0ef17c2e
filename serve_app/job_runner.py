"""The job runner. It claims a queued job (or one whose lease ran out) by writing its lease into the record
over the ETag it read; of two runners, one wins. It renews the lease while it works, and stops
when the record says cancelled or shows another owner. Leases are wall-clock times: runners'
clocks must agree to well within ``lease_s`` (NTP does). Results are content-addressed, so a job
read twice writes the same objects twice, never two results.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from .assemble import result_body
from .backend import Engines
from .config import AppArgs
from .errors import DeadlineExceeded, ServeAppError, StorageUnavailable
from .job_store import JobStore
from .jobs import JobRecord, Lease, claim_decision, gave_up, progress, released, requeued
from .metrics import Meter
from .pipeline import Options
from .results import ResultStore
from .service import DocumentService, Opened
from .storage import Conflict, Storage

logger = logging.getLogger("ray.serve.serve_app.jobs")


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

    def __init__(self, args: AppArgs, storage: Storage, engines: Engines, meter: Meter | None = None) -> None:
        assert args.storage is not None
        self._args, self._conf, self._retention_s = args, args.jobs, args.storage.retention_s
        self.store, self.results = JobStore(storage), ResultStore(storage)
        self._engines = engines
        self._service = DocumentService(args, engines, self.results, meter)
        self.meter = self._service.meter
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
        self.meter.record("serve_app_jobs_running", len(self._running))
        queued = await self.store.queued()  # listed before any early return: a backlog shows
        self.meter.record("serve_app_jobs_queued", len(queued))
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
        for job_id, queued_at in queued:
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
                await self._update(claim, released)
            except (LeaseLost, ServeAppError) as exc:
                logger.warning("job %s not released (its lease will run out): %s", job_id, exc)
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _claim(self, job_id: str, queued_at: float) -> _Claim | None:
        now = time.time()
        found = await self.store.read(job_id)
        decision = claim_decision(found[0] if found else None, queued_at, now, self._conf.max_attempts)
        if decision == "unqueue":
            await self.store.unqueue(job_id)
        if found is None or decision in ("wait", "unqueue"):
            return None
        record, etag = found
        if decision == "give up":
            failed = record.finish("failed", self._retention_s, error=record.last_error or gave_up(record))
            try:
                await self.store.write(failed, etag)
                self.meter.record("serve_app_jobs", 1, {"event": "failed"})
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
                change = partial(requeued, problem=problem, not_before=time.time() + backoff)
                await self._update(claim, change)
            else:
                logger.warning("job %s failed: %s", claim.record.id, exc)
                await self._update(claim, lambda r: r.finish("failed", self._retention_s, error=problem))
                claim.finishing = True
                self.meter.record("serve_app_jobs", 1, {"event": "failed"})
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
            models = await self._service.ready_models(record.options)
            key = await self._service.key(data, opened, record.pages, record.options, models)
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
            await self._update(claim, partial(progress, pages_done=len(pages)))
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
        self.meter.record("serve_app_jobs", 1, {"event": "succeeded"})
        self.meter.record("serve_app_cache", 1, {"result": cache})
        await self.store.unqueue(claim.record.id)
        await self.store.drop_slices(claim.record.id)
