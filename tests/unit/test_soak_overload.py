"""The soak's memory growth and the overload run's verdicts, on made-up samples and answers."""

from __future__ import annotations

from bench.overload import analyse
from bench.soak import growth


def test_growth_compares_the_start_after_warm_up_with_the_end_per_process() -> None:
    samples = [
        {
            "done": done,
            "rss_mib": {"ray::ServeReplica:ocr:Ingress": 100.0 + done / 10, "ray::ProxyActor": 150.0},
        }
        for done in range(0, 2001, 100)
    ]
    g = growth(samples, warmup=200)
    assert g["ray::ProxyActor"]["growth"] == 0.0
    ingress = g["ray::ServeReplica:ocr:Ingress"]
    assert ingress["after_warmup_mib"] == 120.0 and ingress["end_mib"] == 300.0 and ingress["growth"] == 1.5
    assert growth(samples[:1], warmup=0) == {}


def test_overload_verdicts() -> None:
    def answer(status: int, latency: float, retry: str | None = None) -> dict:
        return {"status": status, "latency_s": latency, "retry_after": retry}

    run = {
        "unloaded": [answer(200, 1.0)] * 19 + [answer(200, 2.0)],
        "loaded": [answer(200, 3.0)] * 10 + [answer(503, 0.01, "5")] * 30,
        "probes": [{"path": "/health", "status": 200, "latency_s": 0.02}],
    }
    verdict = analyse(run)
    assert verdict["answers"] == {"200": 10, "503": 30} and verdict["only_200_and_503"]
    assert verdict["p95_unloaded_s"] == 1.0 and verdict["p95_ratio"] == 3.0 and not verdict["p95_within_2x"]
    assert verdict["probes_answer"]
    run["loaded"].append(answer(503, 0.01))  # no Retry-After
    run["loaded"].append(answer(500, 0.2))
    run["probes"].append({"path": "/ready", "status": 503, "latency_s": 0.01})
    verdict = analyse(run)
    assert verdict["wrong_answers"] == 2 and not verdict["only_200_and_503"] and not verdict["probes_answer"]
