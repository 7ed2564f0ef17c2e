"""results.json -> report.md and PNG plots (throughput against load for every system; latency CDF)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TARGETS = {
    "P1": "service pages/s at saturation >= 0.95 x bare",
    "P2": "service pages/s at 8 clients >= 1.3 x naive",
    "P3": "service p50 latency at 1 client <= bare per-page time + 60 ms",
    "P4": "cold start of `serve run` to the first 200 of /ready <= 25 s",
    "P6": "service pages/s at saturation >= tesseract CLI as 2 single-thread processes",
}


def _closed(results: dict[str, Any], system: str) -> dict[float, dict[str, Any]]:
    steps = results["systems"].get(system, {}).get("steps", [])
    return {s["level"]: s for s in steps if s["mode"] == "closed"}


def targets(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target's measured sides and verdict, where this run measured both sides."""
    out: dict[str, dict[str, Any]] = {}
    svc, bare = _closed(results, "service"), _closed(results, "bare")
    naive, tess = _closed(results, "naive"), _closed(results, "tesseract")
    peak = max((s["pages_per_s"] for s in svc.values()), default=None)

    def put(key: str, value: float | None, bound: float | None, higher_is_better: bool = True) -> None:
        if value is None or bound is None:
            return
        ok = value >= bound if higher_is_better else value <= bound
        out[key] = {"what": TARGETS[key], "value": round(value, 4), "bound": round(bound, 4), "met": ok}

    bare_rate = max((s["pages_per_s"] for s in bare.values()), default=None)
    put("P1", peak, None if bare_rate is None else 0.95 * bare_rate)
    if 8 in svc and 8 in naive:
        put("P2", svc[8]["pages_per_s"], 1.3 * naive[8]["pages_per_s"])
    if 1 in svc and bare:
        bare_p50 = min(bare.items())[1]["latency_s"]["p50"]
        put("P3", svc[1]["latency_s"]["p50"], None if bare_p50 is None else bare_p50 + 0.060, False)
    cold = results["systems"].get("service", {}).get("cold_start_s")
    put("P4", cold, 25.0, False)
    if 2 in tess:
        put("P6", peak, tess[2]["pages_per_s"])
    return out


def write(results: dict[str, Any], out: Path) -> None:
    results["targets"] = targets(results)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plots = _plots(results, out)
    lines = [
        f"# Benchmark {results['started']}",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {results['machine']}  ",
        f"Corpus: {results['corpus']['pages']} pages from `{results['corpus']['dir']}`",
        "",
        "| system | mode | load | ok/sent | pages/s | req/s | CPU s/page | p50 s | p95 s | p99 s | max s "
        "| errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, system in results["systems"].items():
        if "error" in system:
            lines.append(f"| {name} | - | - | - | - | - | - | - | - | - | - | not run: {system['error']} |")
        for s in system.get("steps", []):
            lat = s["latency_s"]
            load = f"{s['level']:g} clients" if s["mode"] == "closed" else f"{s['level']:g} req/s"
            lines.append(
                f"| {name} | {s['mode']} | {load} | {s['ok']}/{s['requests']} | {s['pages_per_s']:.3f} | "
                f"{s['requests_per_s']:.3f} | {s['cpu_s_per_page']} | {lat['p50']} | {lat['p95']} | "
                f"{lat['p99']} | {lat['max']} | "
                f"{s['errors'] or '-'} |"
            )
    lines += ["", "| system | cold start s |", "|---|---|"]
    lines += [f"| {n} | {s.get('cold_start_s')} |" for n, s in results["systems"].items()]
    stages = {(n, s["level"]): s["stage_ms_mean"] for n, sys_ in results["systems"].items()
              for s in sys_.get("steps", []) if s["stage_ms_mean"]}  # fmt: skip
    if stages:
        lines += ["", "Mean per-stage time per request (ms), as each system reports it:", ""]
        for (name, level), st in stages.items():
            lines.append(f"- {name} @ {level:g}: " + ", ".join(f"{k} {v:g}" for k, v in st.items()))
    lines += ["", "| target | measured | bound | met |", "|---|---|---|---|"]
    for key, t in results["targets"].items():
        lines.append(f"| {key}: {t['what']} | {t['value']} | {t['bound']} | {'yes' if t['met'] else 'NO'} |")
    lines += ["", *(f"![{p.stem}]({p.name})" for p in plots), ""]
    (out / "report.md").write_text("\n".join(lines))


@contextmanager
def figure(path: Path, width: float = 7.0) -> Iterator[Any]:
    """One PNG plot: yields the axes, then adds the legend and grid and writes ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, 4.5))
    try:
        yield ax
        ax.legend()
        ax.grid(alpha=0.3)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)


def _plots(results: dict[str, Any], out: Path) -> list[Path]:
    paths = [out / "throughput.png", out / "latency_cdf.png"]
    with figure(paths[0]) as ax:
        for name in results["systems"]:
            steps = sorted(_closed(results, name).values(), key=lambda s: s["level"])
            if steps:
                ax.plot(
                    [s["level"] for s in steps], [s["pages_per_s"] for s in steps], marker="o", label=name
                )
        ax.set(
            xscale="log", xlabel="concurrent clients (closed loop)", ylabel="pages / s", title="Throughput"
        )

    with figure(paths[1]) as ax:
        for name in results["systems"]:
            by_level = _closed(results, name)
            if not by_level:
                continue
            level = max((lv for lv in by_level if lv <= 8), default=min(by_level))
            lat = by_level[level]["latencies_s"]
            if lat:
                cdf = [(i + 1) / len(lat) for i in range(len(lat))]
                ax.step(lat, cdf, where="post", label=f"{name} @ {level:g}")
        ax.set(xlabel="latency (s)", ylabel="fraction of requests", title="Latency CDF")
    return paths
