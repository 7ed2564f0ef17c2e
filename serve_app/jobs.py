"""A job's record and its transitions: plain data and pure functions (no S3, no engines), so that
each decision a runner takes can be tested on its own. Where it lives: ``job_store``; who works
on it: ``job_runner``.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .errors import ServeAppError
from .pipeline import Options
from .text_layer import TextLayer

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED = ("succeeded", "failed", "cancelled")
JOB_ID = re.compile(r"^[0-9a-f]{28}$")
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
    # Who submitted it (auth: a key's fingerprint, or "anonymous"); only they see or cancel it.
    # Records from before the field have none, and are anyone's.
    owner: str | None = None
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
    # Records written before the option existed were read without the layer: "off" keeps them so.
    text_layer: TextLayer = "off"
    ocr_tasks: list[str] = []
    # The recognizer that reads it (records from before the field: the default one).
    model: str | None = None
    # Named no model: read by script (route_by_script), as it would have been at once.
    routed: bool = False
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
        return Options(
            dpi=self.dpi,
            layout=self.layout,
            lang=self.lang,
            text_layer=self.text_layer,
            ocr_tasks=frozenset(self.ocr_tasks),
            model=self.model,
            routed=self.routed,
        )

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


Decision = Literal["claim", "wait", "unqueue", "give up"]


def claim_decision(record: JobRecord | None, queued_at: float, now: float, max_attempts: int) -> Decision:
    """What a runner does with a queued job's record as read: ``claim`` it, ``wait`` (a lease
    still running, a back-off not over, a submission maybe still being written), ``unqueue`` it
    (finished, or a marker whose submission died), or ``give up`` (every attempt used)."""
    if record is None:
        return "unqueue" if now - queued_at > ORPHAN_MARKER_S else "wait"
    if record.status in FINISHED:
        return "unqueue"  # its runner stopped between writing the outcome and unqueueing
    if record.not_before > now or (record.lease is not None and record.lease.until > now):
        return "wait"
    if record.attempts >= max_attempts:
        return "give up"
    return "claim"


def progress(record: JobRecord, pages_done: int) -> JobRecord:
    return record.change(pages_done=pages_done)


def released(record: JobRecord) -> JobRecord:
    return record.change(status="queued", lease=None, attempts=record.attempts - 1)


def requeued(record: JobRecord, problem: dict[str, Any], not_before: float) -> JobRecord:
    return record.change(status="queued", lease=None, last_error=problem, not_before=not_before)


def gave_up(record: JobRecord) -> dict[str, Any]:
    return ServeAppError(
        f"job {record.id} was claimed {record.attempts} times and never finished (its runners stopped)"
    ).problem(record.request_id)
