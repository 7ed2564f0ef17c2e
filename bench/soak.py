"""Soak: many requests over mixed real pages against one service, with the resident memory (RSS)
of every Serve process (replicas, proxy, controller) sampled as it goes. A process whose RSS after
the run is more than 5 % over its RSS after warm-up grows: a leak, whatever its rate.

    .venv/bin/python -m bench.soak --requests 2000 --clients 4 --corpus tests/data
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import corpus
from bench.report import figure
from bench.systems import REQUEST_TIMEOUT_S, run_against_service, service_arguments, timed_ocr
from serve_app.client import AsyncClient

SERVE_PROCESSES = ("ray::ServeReplica", "ray::ProxyActor", "ray::ServeController")
GROWTH_LIMIT = 0.05


def serve_rss() -> dict[str, float]:
    """MiB resident per Serve process on this machine, by its title (``ray::ServeReplica:app:Name``),
    and of the ingress's PDF process."""
    import psutil

    rss: dict[str, float] = {}
    for proc in psutil.process_iter(["cmdline", "memory_info"]):
        title = " ".join(proc.info["cmdline"] or [])
        if proc.info["memory_info"] is None:
            continue
        if title.startswith(SERVE_PROCESSES):
            name = title.split()[0].split(".")[0]  # the title names the method running, if any
        elif "-m serve_app.pdf_process" in title:
            name = "PDF process"  # the ingress's PDFium, a process of its own
        else:
            continue
        rss[name] = rss.get(name, 0.0) + proc.info["memory_info"].rss / 2**20
    return rss


def growth(samples: list[dict[str, Any]], warmup: int) -> dict[str, dict[str, float]]:
    """Per process: median RSS of the samples in the first tenth after ``warmup`` requests, of the
    last tenth of the run, and the growth between them (a fraction)."""
    after = [s for s in samples if s["done"] >= warmup]
    if len(after) < 2:
        return {}
    tenth = max(1, len(after) // 10)
    out = {}
    for name in sorted({n for s in after for n in s["rss_mib"]}):
        first = [s["rss_mib"][name] for s in after[:tenth] if name in s["rss_mib"]]
        last = [s["rss_mib"][name] for s in after[-tenth:] if name in s["rss_mib"]]
        if first and last:
            begin, end = statistics.median(first), statistics.median(last)
            out[name] = {"after_warmup_mib": round(begin, 1), "end_mib": round(end, 1),
                         "growth": round(end / begin - 1, 4)}  # fmt: skip
    return out


async def run(url: str, pages: list[corpus.Page], opts: argparse.Namespace) -> dict[str, Any]:
    done, statuses = 0, Counter[int]()
    samples: list[dict[str, Any]] = []
    start = time.perf_counter()

    async def sample(stop: asyncio.Event) -> None:
        while not stop.is_set():
            rss = await asyncio.to_thread(serve_rss)
            samples.append({"t": round(time.perf_counter() - start, 1), "done": done, "rss_mib": rss})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), opts.every_s)

    async def client(k: int, service: AsyncClient) -> None:
        nonlocal done
        i = k
        while i < opts.requests:
            statuses[(await timed_ocr(service, pages[i % len(pages)]))["status"]] += 1
            i += opts.clients
            done += 1

    stop = asyncio.Event()
    sampler = asyncio.ensure_future(sample(stop))
    async with AsyncClient(url, timeout_s=REQUEST_TIMEOUT_S) as service:
        await asyncio.gather(*(client(k, service) for k in range(opts.clients)))
    stop.set()
    await sampler
    samples.append({"t": round(time.perf_counter() - start, 1), "done": done, "rss_mib": serve_rss()})
    return {"statuses": {str(k): v for k, v in sorted(statuses.items())}, "samples": samples,
            "wall_s": round(time.perf_counter() - start, 1)}  # fmt: skip


def write(results: dict[str, Any], out: Path) -> None:
    (out / "soak.json").write_text(json.dumps(results, indent=1))
    rows = [f"| `{name}` | {g['after_warmup_mib']} | {g['end_mib']} | {g['growth'] * 100:+.1f} % |"
            for name, g in results["growth"].items()]  # fmt: skip
    worst = max((g["growth"] for g in results["growth"].values()), default=0.0)
    verdict = "PASS" if worst <= GROWTH_LIMIT else "FAIL"
    (out / "report.md").write_text(
        f"# Soak ({results['started']})\n\n`{results['command']}`\n\n"
        f"{results['run']['wall_s']} s, answers by status {results['run']['statuses']}\n\n"
        "| process | RSS after warm-up (MiB) | RSS at the end (MiB) | growth |\n|---|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\nLargest growth {worst * 100:+.1f} % (limit {GROWTH_LIMIT * 100:.0f} %): {verdict}\n"
    )
    with figure(out / "rss.png") as ax:
        samples = results["run"]["samples"]
        for name in sorted({n for s in samples for n in s["rss_mib"]}):
            points = [(s["done"], s["rss_mib"][name]) for s in samples if name in s["rss_mib"]]
            ax.plot([p[0] for p in points], [p[1] for p in points], label=name.removeprefix("ray::"))
        ax.axvline(results["warmup"], color="grey", linestyle=":")
        ax.set(xlabel="requests answered", ylabel="RSS (MiB)", title="Resident memory of each Serve process")


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    service_arguments(p, limit=12)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--every-s", type=float, default=5.0, help="RSS sampled this often")
    opts = p.parse_args(argv)
    pages = corpus.load(opts.corpus, opts.limit)
    run_, meta = run_against_service("soak", opts, argv, lambda url: run(url, pages, opts))
    warmup = max(1, opts.requests // 10)
    results = {"started": meta.started, "command": meta.command, "warmup": warmup, "run": run_,
               "growth": growth(run_["samples"], warmup)}  # fmt: skip
    write(results, meta.out)
    print(f"report: {meta.out / 'report.md'}")
    return meta.out


if __name__ == "__main__":
    main()
