"""No request reaches a replica whose models are not loaded: the ingress answers 503 instead; readiness
from Serve's view of the deployments is one rule that /ready and each read share."""

from __future__ import annotations

import contextlib
import threading

import httpx
import pytest

from serve_app.serve_backend import _readiness
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


def deployment(running: int, status: str = "HEALTHY") -> dict:
    return {"status": status, "replicas": {"RUNNING": running} if running else {"STARTING": 1}}


def test_ready_when_every_named_deployment_has_a_running_replica() -> None:
    seen = {"Layout": deployment(2), "Recognizer": deployment(1), "Jobs": deployment(0, "UPDATING")}
    assert _readiness(seen, ["Layout", "Recognizer"]) == ("ready", "")
    # The job runner being replaced holds back /ready, not a read that never uses it.
    assert _readiness(seen, ["Layout", "Recognizer", "Jobs"]) == ("loading", "models of Jobs are loading")


def test_a_deployment_that_will_not_come_up_is_degraded_and_one_not_listed_is_loading() -> None:
    seen = {"Layout": deployment(0, "DEPLOY_FAILED"), "Recognizer": deployment(1)}
    assert _readiness(seen, ["Layout", "Recognizer"]) == ("degraded", "no healthy replica of Layout")
    assert _readiness({}, ["Recognizer"]) == ("loading", "models of Recognizer are loading")
