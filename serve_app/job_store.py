"""Async jobs' state in S3, so that no job lives in a replica's memory:

    queue/<id>                          the job is not finished yet (what runners list)
    jobs/<id>/job.json                  its record, changed only by compare-and-swap on its ETag
    jobs/<id>/input                     the document's bytes
    jobs/<id>/slices/<key>/<a>-<b>.json pages read so far; a job claimed again resumes after them
    results/<key>/...                   the result, shared with stored sync answers (same key)

A submission writes the input first and the record last; a cancel and a runner meet only in
compare-and-swap writes of the record.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .errors import NotFound
from .jobs import FINISHED, JOB_ID, JobRecord
from .storage import Conflict, Storage


class JobStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @staticmethod
    def _record_key(job_id: str) -> str:
        if not JOB_ID.match(job_id):  # also keeps odd ids out of the S3 keys
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

    async def existing(self, job_id: str, caller: str | None = None) -> tuple[JobRecord, str]:
        """``read``, or NotFound for a job that is not (or no longer) there; with ``caller``, for
        one that is not theirs too (another's is as unknown as none)."""
        found = await self.read(job_id)
        if found is None or (caller is not None and found[0].owner not in (None, caller)):
            raise NotFound(f"no job {job_id!r} (unknown, or expired and deleted)")
        return found

    async def get(self, job_id: str, caller: str | None = None) -> JobRecord:
        return (await self.existing(job_id, caller))[0]

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
        return [(job_id, t) for job_id, t in found if JOB_ID.match(job_id)]

    async def unqueue(self, job_id: str) -> None:
        await self.storage.delete([f"queue/{job_id}"])

    async def cancel(
        self, job_id: str, retention_s: float, caller: str | None = None
    ) -> tuple[JobRecord, bool]:
        """(the record, whether this call cancelled it): a finished job is left as it is."""
        while True:
            record, etag = await self.existing(job_id, caller)
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
            found = await self.read(job_id) if JOB_ID.match(job_id) else None
            if found is not None and (found[0].status not in FINISHED or (found[0].expires_at or 0) > now):
                continue
            await self.storage.delete([name for name, _ in objects] + [f"queue/{job_id}"])
            gone += 1
        return gone
