"""What the autoscaling run concludes from a replica time series and the answers it got."""

from __future__ import annotations

from bench.autoscale import analyse


def series(points: list[tuple[float, int]]) -> list[dict]:
    return [{"t": t, "replicas": {"Recognizer": n, "Ingress": 1}} for t, n in points]


RUN = {
    "phases": {"low": (0.0, 20.0), "high": (20.0, 80.0), "idle": (80.0, 140.0)},
    "samples": series(
        [(0, 1), (10, 1), (21, 1), (25, 2), (31, 3), (60, 3), (85, 3), (99, 2), (104, 1), (139, 1)]
    ),
    "answers": [{"status": 200, "retry_after": None}] * 30 + [{"status": 503, "retry_after": "1"}] * 5,
}


def test_growth_speed_peak_and_shrink_are_read_from_the_series() -> None:
    a = analyse(RUN)
    rec = a["deployments"]["Recognizer"]
    assert (rec["replicas_before"], rec["replicas_peak"]) == (1, 3)
    assert (rec["first_scale_up_s"], rec["peak_after_s"], rec["back_to_before_s_after_load"]) == (
        5.0,
        11.0,
        24.0,
    )
    assert a["deployments"]["Ingress"]["replicas_peak"] == 1  # fixed: neither grew nor had to shrink
    assert a["statuses"] == {"200": 30, "503": 5} and a["unacceptable_answers"] == 0
    assert a["grew"] and a["shrank"] and a["met"]


def test_a_503_without_retry_after_or_a_500_fails_the_target() -> None:
    bad = {
        **RUN,
        "answers": RUN["answers"]
        + [{"status": 503, "retry_after": None}, {"status": 500, "retry_after": None}],
    }
    a = analyse(bad)
    assert a["unacceptable_answers"] == 2 and not a["met"]
    flat = {**RUN, "samples": series([(0, 1), (50, 1), (120, 1)])}
    assert not analyse(flat)["grew"]
