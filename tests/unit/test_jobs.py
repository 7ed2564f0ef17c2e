"""A runner's decisions about a job record, without S3: what it does with what it read."""

from __future__ import annotations

from serve_app.jobs import ORPHAN_MARKER_S, JobRecord, Lease, claim_decision, new_job_id, requeued

NOW = 1_800_000_000.0


def record(**update) -> JobRecord:  # type: ignore[no-untyped-def]
    base = JobRecord(
        id=new_job_id(), created_at=NOW - 60, updated_at=NOW - 60, media_type="application/pdf",
        page_count=3, pages=[0, 1, 2], dpi=None, layout=True, lang="auto",
    )  # fmt: skip
    return base.model_copy(update=update)


def test_a_queued_job_is_claimed() -> None:
    assert claim_decision(record(), NOW - 60, NOW, max_attempts=3) == "claim"


def test_a_marker_without_a_record_waits_for_its_submission_then_goes() -> None:
    assert claim_decision(None, NOW - 5, NOW, max_attempts=3) == "wait"
    assert claim_decision(None, NOW - ORPHAN_MARKER_S - 1, NOW, max_attempts=3) == "unqueue"


def test_a_finished_job_left_in_the_queue_is_taken_out() -> None:
    for status in ("succeeded", "failed", "cancelled"):
        assert claim_decision(record(status=status), NOW - 60, NOW, max_attempts=3) == "unqueue"


def test_a_running_lease_is_respected_until_it_runs_out() -> None:
    held = record(status="running", attempts=1, lease=Lease(owner="other", until=NOW + 10))
    assert claim_decision(held, NOW - 60, NOW, max_attempts=3) == "wait"
    assert claim_decision(held, NOW - 60, NOW + 11, max_attempts=3) == "claim"


def test_a_backoff_is_waited_out_and_spent_attempts_give_up() -> None:
    backing_off = requeued(record(attempts=1), problem={"detail": "503"}, not_before=NOW + 4)
    assert backing_off.status == "queued" and backing_off.lease is None
    assert claim_decision(backing_off, NOW - 60, NOW, max_attempts=3) == "wait"
    assert claim_decision(backing_off, NOW - 60, NOW + 5, max_attempts=3) == "claim"
    spent = record(status="running", attempts=3, lease=Lease(owner="gone", until=NOW - 1))
    assert claim_decision(spent, NOW - 60, NOW, max_attempts=3) == "give up"


def test_a_job_reads_with_the_options_it_was_submitted_with() -> None:
    job = record(text_layer="off", ocr_tasks=["table"], lang="rus")
    again = JobRecord.model_validate_json(job.model_dump_json())  # as stored in S3 and read back
    assert again.options.text_layer == "off" and again.options.ocr_tasks == frozenset({"table"})
    assert again.options.lang == "rus"
    # A record written before the option existed is read as it was then: OCR, not the layer.
    old = {k: v for k, v in job.model_dump().items() if k not in ("text_layer", "ocr_tasks")}
    assert JobRecord.model_validate(old).options.text_layer == "off"
