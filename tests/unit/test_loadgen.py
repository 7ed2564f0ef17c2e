"""The load generators' arithmetic, on a target whose service time is known (a sleep), on a virtual
clock: the figures are exact, whatever else the machine is doing."""

from __future__ import annotations

import asyncio

import pytest

from bench.corpus import Page
from bench.loadgen import Answer, closed_loop, open_loop
from tests.unit.virtual_time import run

PAGES = [Page(f"p{i}", b"", "image/png") for i in range(4)]


class Sleeper:
    name = "sleeper"

    def __init__(self, seconds: float, status: int = 200) -> None:
        self.seconds, self.status, self.in_flight, self.most = seconds, status, 0, 0

    async def call(self, page: Page) -> Answer:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        # Pages differ: 0.6x to 1.4x the mean, so clients do not move in lock-step.
        await asyncio.sleep(self.seconds * (0.6 + 0.8 * PAGES.index(page) / (len(PAGES) - 1)))
        self.in_flight -= 1
        return Answer(self.status, 2, {"work": self.seconds * 1000})


def test_closed_loop_keeps_n_clients_busy_and_counts_pages_per_second() -> None:
    target = Sleeper(0.05)
    step = run(closed_loop(target, PAGES, clients=4, requests=80, warmup=4, max_s=30))
    s = step.summary()
    assert target.most == 4 and s["requests"] == s["ok"] == 80
    # 4 clients x 2 pages per answer of 0.05 s on average = 160 pages/s (the window's edges aside).
    assert s["pages_per_s"] == pytest.approx(160, rel=0.05)
    assert s["latency_s"]["p50"] == pytest.approx(0.05, rel=0.2)
    assert s["latency_s"]["max"] == pytest.approx(0.07)  # the slowest page: 1.4 x 0.05
    assert s["stage_ms_mean"] == {"work": 50.0} and s["errors"] == {}


def test_errors_are_counted_by_status_and_the_time_bound_holds() -> None:
    s = run(closed_loop(Sleeper(0.01, 503), PAGES, 2, 10, 0, 30)).summary()
    assert s["errors"] == {"503": 10} and s["ok"] == 0 and s["pages_per_s"] == 0.0
    step = run(closed_loop(Sleeper(0.2), PAGES, 1, 1000, 0, max_s=0.5))
    assert len(step.samples) == 3  # sent at 0, 0.12 and 0.29 s; the next would start past 0.5 s


def test_open_loop_sends_at_the_rate_whatever_the_answers_do() -> None:
    target = Sleeper(0.3)
    step = run(open_loop(target, PAGES, rate=20, requests=10, max_s=30))
    sends = sorted(s.sent_s for s in step.samples)
    assert sends == pytest.approx([i / 20 for i in range(10)])  # 10 at 20/s
    assert target.most >= 6  # answers take 0.3 s: requests pile up, as they would in production


class Cpu:
    """A CPU-seconds counter that only the targets below move."""

    def __init__(self) -> None:
        self.busy = 0.0

    def __call__(self) -> float:
        return self.busy


class Burner(Sleeper):
    """Costs the machine its service time in CPU seconds (on ``cpu``) as well as in time."""

    def __init__(self, seconds: float, cpu: Cpu) -> None:
        super().__init__(seconds)
        self.cpu = cpu

    async def call(self, page: Page) -> Answer:
        await asyncio.sleep(self.seconds)
        self.cpu.busy += self.seconds
        return Answer(200, 2)


def test_a_step_counts_the_cpu_each_page_cost_the_machine() -> None:
    # 0.05 s of CPU per answer of 2 pages: 0.025 s a page, warm-up answers included (their CPU
    # was spent within the step too).
    cpu = Cpu()
    burnt = run(closed_loop(Burner(0.05, cpu), PAGES, 2, 20, 2, 30, cpu=cpu)).summary()
    assert cpu.busy == pytest.approx(22 * 0.05) and burnt["cpu_s_per_page"] == 0.025
    slept = run(closed_loop(Sleeper(0.05), PAGES, 2, 20, 2, 30, cpu=cpu)).summary()
    assert slept["cpu_s_per_page"] == 0.0  # waiting costs nothing
    opened = run(open_loop(Burner(0.02, cpu), PAGES, rate=50, requests=10, max_s=30, cpu=cpu)).summary()
    assert opened["cpu_s_per_page"] == 0.01
    unknown = run(closed_loop(Sleeper(0.05), PAGES, 1, 2, 0, 30, cpu=lambda: None)).summary()
    assert unknown["cpu_s_per_page"] is None  # no /proc/stat: no figure rather than a wrong one
