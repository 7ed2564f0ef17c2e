"""Clients sending phototest pages to /v1/ocr, one after another, while a test breaks something under
them: every answer is kept, and any that is not 200 (the right text), 503 + Retry-After or 504 is wrong."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx

from tests.conftest import DATA, reads_phototest

PAGE = {"file": ("p.png", (DATA / "phototest.png").read_bytes())}


class Load:
    """``clients`` threads sending a page each, one after another, until stopped; each outcome kept."""

    def __init__(self, url: str, clients: int) -> None:
        self.url, self.stop = url, threading.Event()
        self.outcomes: list[tuple[float, float, int]] = []  # (sent, answered, status)
        self.wrong: list[str] = []
        self.problems: Counter[str] = Counter()  # the detail of each answer that is not a 200
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=120)

    def _client(self) -> None:
        # The client's own timeout is well past the request's deadline (timeout_s): hitting it is a hang.
        with httpx.Client(timeout=120) as client:
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    r = client.post(f"{self.url}/v1/ocr", files=PAGE, data={"lang": "en", "timeout_s": "45"})
                except httpx.HTTPError as exc:
                    self.wrong.append(f"no answer: {exc!r}")
                    continue
                self.outcomes.append((sent, time.monotonic(), r.status_code))
                if r.status_code != 200:
                    self.problems[f"{r.status_code} {_detail(r)}"] += 1
                if r.status_code == 503 and not r.headers.get("retry-after"):
                    self.wrong.append(f"503 without Retry-After: {r.text}")
                elif r.status_code == 200 and not reads_phototest(r.json()["text"]):
                    self.wrong.append(f"200 with the wrong text: {r.json()['text'][:200]}")
                elif r.status_code not in (200, 503, 504):
                    self.wrong.append(f"{r.status_code}: {r.text[:500]}")
                if r.status_code != 200:
                    self.stop.wait(0.5)  # a client backing off (Retry-After asks for more)

    def ok_since(self, when: float) -> int:
        """Pages read (200) of the requests sent after ``when``."""
        return sum(1 for sent, _, status in self.outcomes if sent > when and status == 200)

    def counts(self, since: float = 0) -> dict[int, int]:
        """Answers by status, of the requests answered after ``since``."""
        statuses = [status for _, answered, status in self.outcomes if answered > since]
        return {s: statuses.count(s) for s in sorted(set(statuses))}


def _detail(r: httpx.Response) -> str:
    try:
        return str(r.json().get("detail", ""))[:120]
    except ValueError:
        return r.text[:120]
