"""Load generators: a closed loop (N clients, each sends its next page when the last one is answered)
and an open loop (requests arrive at a fixed rate whatever the answers do). Every loop is bounded in
request count and in time; figures come from the measured window only (warm-up excluded). Time is
the event loop's clock and CPU a counter passed in, so the arithmetic is tested on a virtual clock."""

from __future__ import annotations

import asyncio
import math
import os
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench.corpus import Page


@dataclass(frozen=True)
class Answer:
    status: int  # HTTP status; 0 when no answer came (connection error, timeout)
    pages: int
    timings_ms: dict[str, float] = field(default_factory=dict)  # the system's own per-stage figures


class Target(Protocol):
    name: str

    async def call(self, page: Page) -> Answer: ...


@dataclass(frozen=True)
class Sample:
    sent_s: float  # since the step started
    latency_s: float
    answer: Answer


@dataclass
class Step:
    mode: str  # "closed" (level = clients) or "open" (level = requests per second)
    level: float
    samples: list[Sample]
    # The throughput window, in seconds since the step started. Closed loop: from the first
    # measured send to the last send, while every client has a request in flight; every answer in
    # it counts, warm-up ones included, so that work begun before it and work left after it even
    # out (counting only the measured requests would miss the clients' last requests, still in
    # flight, and undercount long pages at high concurrency). Open loop: first send to last answer.
    window: tuple[float, float]
    # Closed loop: the warm-up answers (not in latency figures; their completions count above).
    warmup: list[Sample] = field(default_factory=list)
    # CPU seconds the whole machine was busy during the step (every process: the system under
    # test, its helpers, this client); None where /proc/stat is not there.
    cpu_s: float | None = None

    def summary(self) -> dict[str, Any]:
        ok = [s for s in self.samples if s.answer.status == 200]
        lat = sorted(s.latency_s for s in ok)
        stages: dict[str, list[float]] = {}
        for s in ok:
            for k, v in s.answer.timings_ms.items():
                stages.setdefault(k, []).append(v)
        begin, end = self.window
        answered = ok + [s for s in self.warmup if s.answer.status == 200]
        inside = [s for s in answered if begin <= s.sent_s + s.latency_s <= end]
        if not inside:  # too few requests for a steady window: count them all, drain included
            end = max((s.sent_s + s.latency_s for s in ok), default=begin)
            inside = ok
        wall = end - begin
        pages = sum(s.answer.pages for s in inside)
        errors = Counter(str(s.answer.status) for s in self.samples if s.answer.status != 200)
        done = sum(s.answer.pages for s in answered)  # every page the step's CPU went to
        return {
            "mode": self.mode,
            "level": self.level,
            "requests": len(self.samples),
            "ok": len(ok),
            "pages": sum(s.answer.pages for s in ok),
            "window_s": round(wall, 3),
            "pages_per_s": round(pages / wall, 4) if wall > 0 else 0.0,
            "requests_per_s": round(len(inside) / wall, 4) if wall > 0 else 0.0,
            "cpu_s_per_page": round(self.cpu_s / done, 3) if self.cpu_s is not None and done else None,
            "latency_s": {
                "p50": _pct(lat, 50), "p95": _pct(lat, 95), "p99": _pct(lat, 99),
                "max": round(lat[-1], 4) if lat else None,
                "mean": round(statistics.fmean(lat), 4) if lat else None,
            },
            "errors": dict(errors),
            "stage_ms_mean": {k: round(statistics.fmean(v), 1) for k, v in sorted(stages.items())},
            "latencies_s": [round(v, 4) for v in lat],
        }  # fmt: skip


def busy_cpu_s() -> float | None:
    """CPU seconds this machine has been busy since boot (Linux), None elsewhere."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _since(cpu: Callable[[], float | None], cpu_start: float | None) -> float | None:
    now = cpu()
    return None if cpu_start is None or now is None else now - cpu_start


def _pct(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    return round(values[max(0, math.ceil(p / 100 * len(values)) - 1)], 4)


async def closed_loop(
    target: Target,
    pages: Sequence[Page],
    clients: int,
    requests: int,
    warmup: int,
    max_s: float,
    tick: Callable[[], None] = lambda: None,
    cpu: Callable[[], float | None] = busy_cpu_s,
) -> Step:
    """``clients`` clients send pages round-robin until ``warmup + requests`` are sent or ``max_s``
    passed; the first ``warmup`` answers are not measured."""
    clock = asyncio.get_running_loop().time
    sent = 0
    samples: list[Sample] = []
    start = clock()
    last_send = 0.0

    async def client() -> None:
        nonlocal sent, last_send
        while sent < warmup + requests and clock() - start < max_s:
            index, sent = sent, sent + 1
            t = clock()
            last_send = t - start
            answer = await target.call(pages[index % len(pages)])
            latency = clock() - t
            tick()
            (samples if index >= warmup else warm).append(Sample(t - start, latency, answer))

    warm: list[Sample] = []
    cpu_start = cpu()
    await asyncio.gather(*(client() for _ in range(clients)))
    first = min((s.sent_s for s in samples), default=0.0)
    return Step("closed", clients, samples, (first, last_send), warm, _since(cpu, cpu_start))


async def open_loop(
    target: Target,
    pages: Sequence[Page],
    rate: float,
    requests: int,
    max_s: float,
    tick: Callable[[], None] = lambda: None,
    cpu: Callable[[], float | None] = busy_cpu_s,
) -> Step:
    """``requests`` requests at ``rate`` per second, evenly spaced, whatever the answers do (a
    queue that grows shows as latency); waits at most ``max_s`` in all."""
    clock = asyncio.get_running_loop().time
    samples: list[Sample] = []
    start = clock()

    async def one(index: int) -> None:
        await asyncio.sleep(max(0.0, start + index / rate - clock()))
        t = clock()
        answer = await target.call(pages[index % len(pages)])
        tick()
        samples.append(Sample(t - start, clock() - t, answer))

    cpu_start = cpu()
    tasks = [asyncio.ensure_future(one(i)) for i in range(requests)]
    _, pending = await asyncio.wait(tasks, timeout=max_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    end = max((s.sent_s + s.latency_s for s in samples), default=0.0)
    return Step("open", rate, samples, (0.0, end), cpu_s=_since(cpu, cpu_start))
