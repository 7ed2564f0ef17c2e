"""No request reaches a replica whose models are not loaded: the ingress answers 503 instead."""

from __future__ import annotations

import contextlib
import threading

import httpx
import pytest

from tests.conftest import DATA
from tests.serve_fixtures import answers_200, cpu_args, wait_for

PNG = (DATA / "phototest.png").read_bytes()


@pytest.fixture
def broken_app(base_url: str, tmp_path):
    """A second application whose recognizer cannot load its models (tessdata missing)."""
    from ray import serve

    from serve_app.app import build_app

    missing = tmp_path / "no-tessdata-here"
    small = {"ray_actor_options": {"num_cpus": 0.05}, "num_replicas": 1}
    args = cpu_args(
        recognizer={"tessdata_dir": str(missing), "deployment": small},
        layout={"deployment": small},
        ingress={"deployment": small},
    )

    def deploy_in_background() -> None:
        # serve.run waits for RUNNING, which this app never reaches; it raises once deleted.
        with contextlib.suppress(Exception):
            serve.run(build_app(args), name="broken", route_prefix="/broken")

    deploy = threading.Thread(target=deploy_in_background, daemon=True)
    deploy.start()
    yield f"{base_url}/broken", missing
    serve.delete("broken", _blocking=True)
    deploy.join(timeout=5)  # serve.run keeps polling for the deleted app; it is a daemon


def test_requests_get_503_while_the_recognizer_cannot_load(broken_app) -> None:
    url, missing = broken_app

    wait_for(lambda: answers_200(url + "/health"))

    def failure_reported() -> bool:
        health = httpx.get(url + "/health", timeout=5).json()
        return str(missing) in health["deployments"]["Recognizer"]["message"]

    wait_for(failure_reported, timeout_s=90)
    health = httpx.get(url + "/health", timeout=5).json()
    assert health["status"] in ("loading", "degraded")
    assert health["deployments"]["Recognizer"]["replicas"].get("RUNNING", 0) == 0

    ready = httpx.get(url + "/ready", timeout=5)
    assert ready.status_code == 503 and ready.headers["retry-after"]
    r = httpx.post(url + "/v1/ocr", files={"file": ("p.png", PNG)}, timeout=30)
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/not-ready") and int(r.headers["retry-after"]) >= 1
