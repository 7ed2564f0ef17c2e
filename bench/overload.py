"""Overload: requests arriving at 4x what the service can answer, for a minute, with the probes
asked once a second throughout. What must hold: every answer is a 200 or a 503 with Retry-After,
every probe answers, and the admitted requests' p95 stays within 2x of the unloaded p95 (shedding
at the door, not queueing inside).

    .venv/bin/python -m bench.overload --corpus tests/data
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench import corpus
from bench.loadgen import _pct
from bench.systems import REQUEST_TIMEOUT_S, run_against_service, service_arguments, timed_ocr
from serve_app.client import AsyncClient

OVERLOAD = 4.0
P95_LIMIT = 2.0


async def closed(service: AsyncClient, pages: list[corpus.Page], clients: int, seconds: float):
    """``clients`` clients one request after another for ``seconds``: the answers, and requests/s."""
    answers: list[dict[str, Any]] = []
    until = time.perf_counter() + seconds
    start = time.perf_counter()

    async def client(k: int) -> None:
        i = k
        while time.perf_counter() < until:
            answers.append(await timed_ocr(service, pages[i % len(pages)]))
            i += clients

    await asyncio.gather(*(client(k) for k in range(clients)))
    return answers, sum(a["status"] == 200 for a in answers) / (time.perf_counter() - start)


async def probe(http: httpx.AsyncClient, url: str, stop: asyncio.Event, out: list[dict[str, Any]]) -> None:
    while not stop.is_set():
        for path in ("/health", "/ready", "/livez"):
            t = time.perf_counter()
            try:
                status = (await http.get(url + path, timeout=10)).status_code
            except httpx.HTTPError:
                status = 0
            out.append({"path": path, "status": status, "latency_s": round(time.perf_counter() - t, 3)})
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            continue


async def run(url: str, pages: list[corpus.Page], opts: argparse.Namespace) -> dict[str, Any]:
    async with (
        AsyncClient(url, timeout_s=REQUEST_TIMEOUT_S, max_connections=None) as service,
        httpx.AsyncClient() as http,
    ):
        await closed(service, pages, 1, 5)  # warm-up
        unloaded, _ = await closed(service, pages, 1, opts.unloaded_s)
        _, capacity = await closed(service, pages, opts.capacity_clients, opts.capacity_s)
        rate = OVERLOAD * capacity
        probes: list[dict[str, Any]] = []
        stop = asyncio.Event()
        prober = asyncio.ensure_future(probe(http, url, stop, probes))
        start = time.perf_counter()

        async def one(i: int) -> dict[str, Any]:
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            return await timed_ocr(service, pages[i % len(pages)])

        loaded = await asyncio.gather(*(one(i) for i in range(int(rate * opts.seconds))))
        stop.set()
        await prober
    return {"unloaded": unloaded, "capacity_rps": round(capacity, 3), "rate_rps": round(rate, 3),
            "loaded": list(loaded), "probes": probes}  # fmt: skip


def analyse(run_: dict[str, Any]) -> dict[str, Any]:
    """The figures and verdicts of a run (pure: tested on made-up answers)."""
    p95_unloaded = _pct(sorted(a["latency_s"] for a in run_["unloaded"] if a["status"] == 200), 95)
    admitted = sorted(a["latency_s"] for a in run_["loaded"] if a["status"] == 200)
    p95_admitted = _pct(admitted, 95)
    wrong = [
        a for a in run_["loaded"] if not (a["status"] == 200 or (a["status"] == 503 and a["retry_after"]))
    ]
    probes_failed = [p for p in run_["probes"] if p["status"] != 200]  # /ready too: no flapping
    ratio = round(p95_admitted / p95_unloaded, 2) if p95_admitted and p95_unloaded else None
    return {
        "answers": dict(Counter(str(a["status"]) for a in run_["loaded"])),
        "wrong_answers": len(wrong),
        "p95_unloaded_s": p95_unloaded,
        "p95_admitted_s": p95_admitted,
        "p95_ratio": ratio,
        "probes": len(run_["probes"]),
        "probes_failed": len(probes_failed),
        "probe_max_s": max((p["latency_s"] for p in run_["probes"]), default=None),
        "only_200_and_503": not wrong,
        "probes_answer": not probes_failed,
        "p95_within_2x": ratio is not None and ratio <= P95_LIMIT,
    }


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(prog="python -m bench.overload", description=__doc__.split("\n\n")[0])
    service_arguments(p)
    p.add_argument("--unloaded-s", type=float, default=30)
    p.add_argument("--capacity-clients", type=int, default=8)
    p.add_argument("--capacity-s", type=float, default=30)
    p.add_argument("--seconds", type=float, default=60)
    opts = p.parse_args(argv)
    pages = corpus.load(opts.corpus, opts.limit)
    run_, meta = run_against_service("overload", opts, argv, lambda url: run(url, pages, opts))
    results = {"started": meta.started, "command": meta.command, "analysis": analyse(run_), "run": run_}
    (meta.out / "overload.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results["analysis"], indent=1))
    return meta.out


if __name__ == "__main__":
    main()
