"""Autoscaling run (target P5): a step of load on the service, replicas watched the whole time.

    python -m bench.autoscale [--config bench/serve_config.autoscale.yaml] [--corpus DIR] [--out DIR]

Phases: 1 client for ``--low-s``, then ``--clients`` (16) for ``--high-s``, then no load for
``--idle-s``. Every second the service's own ``/health`` gives the RUNNING replicas of each
deployment. Recorded: how many replicas and how fast they came, every answer's status (only 200 and
503 with Retry-After are acceptable), and whether the replicas shrank back after the load.
Output: autoscale.json, report.md, replicas.png under bench/results/autoscale-<timestamp>/.
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
from bench.report import figure
from bench.systems import REQUEST_TIMEOUT_S, ROOT, run_against_service, service_arguments, timed_ocr
from serve_app.client import AsyncClient, ServiceError

DEFAULT_CONFIG = ROOT / "bench" / "serve_config.autoscale.yaml"


async def run_phases(url: str, pages: list[corpus.Page], opts: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    samples: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []
    phases = [("low", 1, opts.low_s), ("high", opts.clients, opts.high_s), ("idle", 0, opts.idle_s)]

    async def watch(client: AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                health = await asyncio.wait_for(client.health(), 5)
                running = {n: d["replicas"].get("RUNNING", 0) for n, d in health["deployments"].items()}
            except (httpx.HTTPError, ServiceError, TimeoutError, KeyError):
                running = {}
            samples.append({"t": round(time.perf_counter() - start, 2), "replicas": running})
            await asyncio.sleep(1.0)

    async def load(client: AsyncClient, clients: int, until: float, phase: str) -> None:
        async def one_client(k: int) -> None:
            i = k
            while time.perf_counter() < until:
                t = round(time.perf_counter() - start, 2)
                answer = await timed_ocr(client, pages[i % len(pages)])
                i += clients
                answers.append({"t": t, "phase": phase, **answer})
                if answer["status"] == 503 and answer["retry_after"]:
                    await asyncio.sleep(answer["retry_after"])  # a well-behaved client honours Retry-After

        await asyncio.gather(*(one_client(k) for k in range(clients)))

    stop = asyncio.Event()
    async with AsyncClient(url, timeout_s=REQUEST_TIMEOUT_S, max_connections=None) as client:
        watcher = asyncio.ensure_future(watch(client, stop))
        bounds = {}
        for phase, clients, seconds in phases:
            began = time.perf_counter()
            if clients:
                await load(client, clients, began + seconds, phase)
            else:
                await asyncio.sleep(seconds)
            bounds[phase] = (round(began - start, 2), round(time.perf_counter() - start, 2))
        stop.set()
        await watcher
    return {"samples": samples, "answers": answers, "phases": bounds}


def analyse(run: dict[str, Any]) -> dict[str, Any]:
    samples, answers = run["samples"], run["answers"]
    high_start, high_end = run["phases"]["high"]
    names = sorted({n for s in samples for n in s["replicas"]})
    out: dict[str, Any] = {"deployments": {}}
    for name in names:
        series = [(s["t"], s["replicas"].get(name, 0)) for s in samples if name in s["replicas"]]
        before = max((n for t, n in series if t < high_start), default=0)
        peak = max((n for _, n in series), default=0)
        first_up = next((t for t, n in series if t >= high_start and n > before), None)
        at_peak = next((t for t, n in series if t >= high_start and n == peak), None)
        back = next((t for t, n in series if t >= high_end and n <= before), None)
        out["deployments"][name] = {
            "replicas_before": before, "replicas_peak": peak,
            "first_scale_up_s": None if first_up is None else round(first_up - high_start, 1),
            "peak_after_s": None if at_peak is None or peak == before else round(at_peak - high_start, 1),
            "back_to_before_s_after_load": None if back is None else round(back - high_end, 1),
        }  # fmt: skip
    statuses = Counter(str(a["status"]) for a in answers)
    bad = [a for a in answers if a["status"] != 200 and not (a["status"] == 503 and a["retry_after"])]
    grew = any(d["replicas_peak"] > d["replicas_before"] for d in out["deployments"].values())
    shrank = all(d["back_to_before_s_after_load"] is not None for d in out["deployments"].values())
    out.update(statuses=dict(statuses), unacceptable_answers=len(bad), grew=grew, shrank=shrank,
               met=grew and shrank and not bad)  # fmt: skip
    return out


def write(results: dict[str, Any], out: Path) -> None:
    (out / "autoscale.json").write_text(json.dumps(results, indent=1))
    a = results["analysis"]
    lines = [
        f"# Autoscaling {results['started']}",
        "",
        f"Command: `{results['command']}`  ",
        f"Phases (s since start): {results['run']['phases']}",
        "",
        "| deployment | replicas before | peak | first scale-up after the step | peak after | back after |",
        "|---|---|---|---|---|---|",
        *(
            f"| {n} | {d['replicas_before']} | {d['replicas_peak']} | {d['first_scale_up_s']} s | "
            f"{d['peak_after_s']} s | {d['back_to_before_s_after_load']} s |"
            for n, d in a["deployments"].items()
        ),
        "",
        f"Answers by status: {a['statuses']}; "
        f"other than 200 or 503 + Retry-After: {a['unacceptable_answers']}.",
        f"P5 (grew, no other errors, shrank back): {'met' if a['met'] else 'NOT met'}.",
        "",
        "![replicas](replicas.png)",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    _plot(results, out / "replicas.png")


def _plot(results: dict[str, Any], path: Path) -> None:
    samples = results["run"]["samples"]
    with figure(path, width=8) as ax:
        for name in results["analysis"]["deployments"]:
            pts = [(s["t"], s["replicas"][name]) for s in samples if name in s["replicas"]]
            ax.step([t for t, _ in pts], [n for _, n in pts], where="post", label=name)
        for phase, (t0, t1) in results["run"]["phases"].items():
            ax.axvspan(t0, t1, alpha={"low": 0.05, "high": 0.15, "idle": 0.0}[phase], color="tab:red")
            ax.text((t0 + t1) / 2, 1.01, phase, ha="center", transform=ax.get_xaxis_transform())
        ax.set(xlabel="seconds", ylabel="RUNNING replicas", title="Replicas under a step of load")


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(prog="python -m bench.autoscale", description=__doc__.split("\n\n")[0])
    service_arguments(p, DEFAULT_CONFIG)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--low-s", type=float, default=20)
    p.add_argument("--high-s", type=float, default=60)
    p.add_argument("--idle-s", type=float, default=60)
    opts = p.parse_args(argv)
    pages = corpus.load(opts.corpus, opts.limit)
    run, meta = run_against_service("autoscale", opts, argv, lambda url: run_phases(url, pages, opts))
    results = {"started": meta.started, "command": meta.command, "run": run, "analysis": analyse(run)}
    write(results, meta.out)
    print(f"report: {meta.out / 'report.md'}")
    return meta.out


if __name__ == "__main__":
    main()
