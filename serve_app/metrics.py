"""Application metrics: what was read, how long each stage took, what was flagged, the cache, jobs.

Replicas record them through ``ray.serve.metrics`` (``deployments.ServeMeter``): Ray's metrics agent on each
node exports them for Prometheus with a ``ray_`` prefix (counters also get ``_total``) and the
replica's ``deployment``, ``replica`` and ``application`` tags. Without Ray (the unit tests, the
API over in-process engines) the ``Meter`` base records nothing. The observations are worked out
here from the answer's own JSON, so that a metric counts what the client was sent.

    name (Prometheus: ray_<name>, counters ray_<name>_total)  kind       tags
    serve_app_pages                     counter    source: text_layer | ocr
    serve_app_regions                   counter    engine: tesseract, rapidocr, vllm, text_layer, ...
    serve_app_flagged_blocks            counter    reason: repetition, generation stopped: length, ...
    serve_app_stage_seconds             histogram  stage: render | layout | recognize | page
    serve_app_cache                     counter    result: hit | miss
    serve_app_jobs                      counter    event: submitted | succeeded | failed | cancelled
    serve_app_jobs_queued               gauge      (queued jobs, as a Jobs replica last listed them)
    serve_app_jobs_running              gauge      (jobs this Jobs replica is reading)
    serve_app_vlm_completion_tokens     histogram  (tokens a VLM wrote for one region)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["counter", "gauge", "histogram"]

SECONDS: list[float] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]
TOKENS: list[float] = [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
# A flag's reason is free text from an engine ("generation stopped: length"); its first words
# name the kind, and a tag must not take unbounded values.
REASON_CHARS = 40


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    description: str
    tags: tuple[str, ...] = ()


METRICS = {
    m.name: m
    for m in (
        Metric("serve_app_pages", "counter", "Pages read, by their text's source", ("source",)),
        Metric("serve_app_regions", "counter", "Regions read, by engine", ("engine",)),
        Metric("serve_app_flagged_blocks", "counter", "Blocks flagged by their reader", ("reason",)),
        Metric("serve_app_stage_seconds", "histogram", "Seconds of a page in a stage", ("stage",)),
        Metric("serve_app_cache", "counter", "Documents from stored results or read", ("result",)),
        Metric("serve_app_jobs", "counter", "Jobs submitted, and ended by how", ("event",)),
        Metric("serve_app_jobs_queued", "gauge", "Jobs in the queue, as last listed"),
        Metric("serve_app_jobs_running", "gauge", "Jobs this replica is reading"),
        Metric("serve_app_vlm_completion_tokens", "histogram", "Tokens a VLM wrote for a region"),
    )
}
BOUNDARIES = {"serve_app_stage_seconds": SECONDS, "serve_app_vlm_completion_tokens": TOKENS}

STAGES = ("render", "layout", "recognize")


def engine_family(engine: str) -> str:
    """``tesseract:rus+eng`` -> ``tesseract``: a tag must not take a value per client's language."""
    return engine.split(":", 1)[0] or "none"


def reason_kind(error: str) -> str:
    """A flag's kind: its leading words (``repetition``, ``generation stopped: length``,
    ``RuntimeError``), never the arguments of an exception (paths, messages)."""
    kind = re.match(r"[A-Za-z_ :-]*", error)
    return (kind.group(0) if kind else "").strip(" :")[:REASON_CHARS] or "other"


def page_observations(pages: Iterable[dict[str, Any]]) -> list[tuple[str, float, dict[str, str]]]:
    """(metric, value, tags) for pages as ``assemble.page_json`` writes them."""
    seen: list[tuple[str, float, dict[str, str]]] = []
    for page in pages:
        blocks = page["blocks"]
        source = "text_layer" if blocks and all(b["source"] == "text_layer" for b in blocks) else "ocr"
        seen.append(("serve_app_pages", 1, {"source": source}))
        for block in blocks:
            seen.append(("serve_app_regions", 1, {"engine": engine_family(block["engine"])}))
            if block.get("error"):
                seen.append(("serve_app_flagged_blocks", 1, {"reason": reason_kind(str(block["error"]))}))
        timings = page["timings_ms"]
        for stage in (*STAGES, "total"):
            if stage in timings:
                tag = "page" if stage == "total" else stage
                seen.append(("serve_app_stage_seconds", timings[stage] / 1000, {"stage": tag}))
    return seen


class Meter:
    """Where a replica's observations go: nowhere, here (each is only checked against its
    metric); Ray's metrics in ``deployments.ServeMeter``."""

    def record(self, name: str, value: float, tags: dict[str, str] | None = None) -> None:
        """Add to a counter, set a gauge or observe a histogram's value, by the metric's kind."""
        metric = METRICS[name]
        if set(tags or ()) != set(metric.tags):
            raise ValueError(f"{name} is tagged {metric.tags}, not {tuple(tags or ())}")

    def pages(self, pages: Iterable[dict[str, Any]]) -> None:
        for name, value, tags in page_observations(pages):
            self.record(name, value, tags)
