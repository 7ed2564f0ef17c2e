"""Load-test harness: the service against its baselines, same pages, same machine, same run.

    python -m bench [--corpus DIR] [--systems service,bare,naive,rapidocr_api,tesseract]
                    [--concurrency 1,2,4,8,16,32] [--rate R ...] [--requests N] [--out DIR]

Each system is started, measured over the concurrency sweep (closed loop) and any open-loop rates,
and stopped before the next starts, so no two compete for the cores. Results go to
bench/results/<timestamp>/ (results.json, report.md, throughput.png, latency_cdf.png).
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from bench import corpus, report
from bench.loadgen import closed_loop, open_loop
from bench.systems import ROOT, Bare, Naive, RapidocrApi, Service, TesseractCli

DEFAULT_CORPUS = ROOT.parent / "shared" / "evaldata"
SYSTEMS = ("service", "bare", "naive", "rapidocr_api", "tesseract")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--corpus", type=Path, default=DEFAULT_CORPUS, help="folder of documents (default: evaldata)"
    )
    p.add_argument("--limit", type=int, help="use only the first N pages of the corpus")
    p.add_argument(
        "--systems", default=",".join(SYSTEMS), help="comma-separated, from: " + ", ".join(SYSTEMS)
    )
    p.add_argument("--concurrency", default="1,2,4,8,16,32", help="closed-loop client counts")
    p.add_argument("--rate", default="", help="open-loop arrival rates (requests/s), comma-separated")
    p.add_argument(
        "--requests", type=int, default=0, help="measured requests per step (default: max(8, 2 x clients))"
    )
    p.add_argument(
        "--warmup", type=int, default=-1, help="unmeasured requests first (default: one per client)"
    )
    p.add_argument("--max-step-s", type=float, default=600.0, help="time bound of one step")
    p.add_argument("--config", type=Path, default=ROOT / "serve_config.cpu.yaml", help="serve config to run")
    p.add_argument("--url", help="measure a service already running at this 127.0.0.1 URL instead")
    p.add_argument(
        "--tesseract-lang", default="page", help="tesseract's -l: 'page' (the manifest's language), or codes"
    )
    p.add_argument("--out", type=Path, help="default: bench/results/<timestamp>")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def build(name: str, opts: argparse.Namespace) -> Any:
    if name == "service":
        return Service(opts.config, opts.url)
    if name == "bare":
        return Bare(opts.config)
    if name == "naive":
        return Naive(opts.config)
    if name == "rapidocr_api":
        return RapidocrApi()
    if name == "tesseract":
        return TesseractCli(opts.tesseract_lang)
    raise SystemExit(f"unknown system {name!r}; choose from {', '.join(SYSTEMS)}")


async def measure(system: Any, pages: list[corpus.Page], opts: argparse.Namespace) -> list[dict[str, Any]]:
    from tqdm import tqdm

    levels = [int(c) for c in opts.concurrency.split(",") if c]
    if system.name == "bare":
        levels = [1]  # a plain loop in one process: one page at a time by design
    steps = []
    for clients in levels:
        requests = opts.requests or max(8, 2 * clients)
        warmup = clients if opts.warmup < 0 else opts.warmup
        with tqdm(total=warmup + requests, desc=f"{system.name} x{clients}", disable=opts.no_progress,
                  leave=False) as bar:  # fmt: skip
            step = await closed_loop(system, pages, clients, requests, warmup, opts.max_step_s, bar.update)
        steps.append(step.summary())
        print(_line(system.name, steps[-1]), flush=True)
    for rate in (float(r) for r in opts.rate.split(",") if r):
        requests = opts.requests or max(8, int(rate * 60))
        with tqdm(
            total=requests, desc=f"{system.name} {rate:g}/s", disable=opts.no_progress, leave=False
        ) as bar:
            step = await open_loop(system, pages, rate, requests, opts.max_step_s, bar.update)
        steps.append(step.summary())
        print(_line(system.name, steps[-1]), flush=True)
    await system.close()
    return steps


def _line(name: str, s: dict[str, Any]) -> str:
    unit = "clients" if s["mode"] == "closed" else "req/s"
    lat = s["latency_s"]
    return (
        f"{name:>13} {s['level']:>5g} {unit:<7} {s['pages_per_s']:7.3f} pages/s  p50 {lat['p50']} s  "
        f"p95 {lat['p95']} s  ok {s['ok']}/{s['requests']}  errors {s['errors'] or '-'}"
    )


def main(argv: list[str] | None = None) -> Path:
    opts = parse(argv)
    pages = corpus.load(opts.corpus, opts.limit)
    started = time.strftime("%Y%m%d-%H%M%S")
    out = opts.out or ROOT / "bench" / "results" / started
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "started": started,
        "command": "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv),
        "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}",
        "corpus": {"dir": str(opts.corpus), "pages": len(pages)},
        "systems": {},
    }
    for name in [s.strip() for s in opts.systems.split(",") if s.strip()]:
        try:
            system = build(name, opts)
            system.start()
        except Exception as exc:  # a baseline that cannot run here is reported, not fatal
            print(f"{name}: not run: {exc}", flush=True)
            results["systems"][name] = {"error": str(exc)}
            continue
        try:
            results["systems"][name] = {
                "cold_start_s": system.cold_start_s,
                "steps": asyncio.run(measure(system, pages, opts)),
            }
        finally:
            system.stop()
    report.write(results, out)
    print(f"results: {out / 'results.json'}\nreport:  {out / 'report.md'}")
    return out


if __name__ == "__main__":
    main()
