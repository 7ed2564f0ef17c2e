"""The load generators' arithmetic, on a target whose service time is known (a sleep)."""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.corpus import Page
from bench.loadgen import Answer, closed_loop, open_loop

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
    step = asyncio.run(closed_loop(target, PAGES, clients=4, requests=80, warmup=4, max_s=30))
    s = step.summary()
    assert target.most == 4 and s["requests"] == s["ok"] == 80
    # 4 clients x 2 pages per answer of 0.05 s on average = 160 pages/s.
    assert 135 <= s["pages_per_s"] <= 180
    assert s["latency_s"]["p50"] == pytest.approx(0.05, abs=0.02)
    assert s["stage_ms_mean"] == {"work": 50.0} and s["errors"] == {}


def test_errors_are_counted_by_status_and_the_time_bound_holds() -> None:
    s = asyncio.run(closed_loop(Sleeper(0.01, 503), PAGES, 2, 10, 0, 30)).summary()
    assert s["errors"] == {"503": 10} and s["ok"] == 0 and s["pages_per_s"] == 0.0
    step = asyncio.run(closed_loop(Sleeper(0.2), PAGES, 1, 1000, 0, max_s=0.5))
    assert len(step.samples) <= 4  # stopped by time, not by count


def test_open_loop_sends_at_the_rate_whatever_the_answers_do() -> None:
    target = Sleeper(0.3)
    step = asyncio.run(open_loop(target, PAGES, rate=20, requests=10, max_s=30))
    sends = sorted(s.sent_s for s in step.samples)
    assert len(sends) == 10 and sends[-1] == pytest.approx(0.45, abs=0.1)  # 10 at 20/s
    assert target.most >= 6  # answers take 0.3 s: requests pile up, as they would in production


class Burner(Sleeper):
    """Keeps a core busy for its service time instead of sleeping."""

    async def call(self, page: Page) -> Answer:
        end = time.process_time() + self.seconds
        while time.process_time() < end:
            pass
        await asyncio.sleep(0)
        return Answer(200, 2)


def test_a_step_counts_the_cpu_each_page_cost_the_machine() -> None:
    # 0.05 s of CPU per answer of 2 pages: 0.025 s a page, and what the loop itself costs on top.
    burnt = asyncio.run(closed_loop(Burner(0.05), PAGES, 2, 20, 2, 30)).summary()
    assert 0.02 <= burnt["cpu_s_per_page"] <= 0.05
    slept = asyncio.run(closed_loop(Sleeper(0.05), PAGES, 2, 20, 2, 30)).summary()
    assert slept["cpu_s_per_page"] < 0.01  # waiting costs (next to) nothing
    opened = asyncio.run(open_loop(Burner(0.02), PAGES, rate=50, requests=10, max_s=30)).summary()
    assert 0.008 <= opened["cpu_s_per_page"] <= 0.03
