"""One real Ray + Serve instance per test session, serving the CPU config on 127.0.0.1, and a real
S3 per module: the fixtures of tests/integration and tests/reliability (tests/conftest.py shares
them, so that both folders see the one session)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from scripts.s3_dev import SeaweedFS
from serve_app.client import Client

ROOT = Path(__file__).parents[1]

# vLLM on CPU in tests: keep the engine core in-process (it starts in half the time, and a spawned
# core under pytest can outlive a failed test). Set before anything imports vllm.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], bool], timeout_s: float = 120, every_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every_s)
    raise TimeoutError(f"condition not met within {timeout_s} s")


def answers_200(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def wait_job(url: str, job_id: str, until: Callable[[dict], bool], timeout_s: float = 180) -> dict:
    seen: dict = {}
    with Client(url, timeout_s=10) as c:

        def check() -> bool:
            seen.update(c.job(job_id))
            return until(seen)

        wait_for(check, timeout_s=timeout_s, every_s=0.3)
    return seen


def queue_pages(url: str, pages: int) -> str:
    """A job of ``pages`` phototest pages (English) queued: its id."""
    from tests.conftest import phototest_tiff

    with Client(url, timeout_s=30) as c:
        return str(c.submit(("p.tif", phototest_tiff(pages)), lang="en")["id"])


def stored_files(s3: SeaweedFS, key: str) -> list[str]:
    """The files of the result ``key`` in the test bucket, by their names under it."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name="us-east-1")
    listed = client.list_objects_v2(Bucket="ocr-results", Prefix=f"serve-app/results/{key}/")
    return sorted(o["Key"].rsplit(f"{key}/", 1)[1] for o in listed.get("Contents", []))


def complete_result(pages: int) -> list[str]:
    """The files of a whole stored result of ``pages`` pages, as ``stored_files`` names them."""
    return [f"pages/{n:04d}.jpg" for n in range(1, pages + 1)] + ["result.json", "result.md"]


def finished(job: dict) -> bool:
    return job["status"] in ("succeeded", "failed", "cancelled")


def cpu_args(**overrides: dict) -> dict:
    """The embedded default's args, with per-section overrides."""
    config = yaml.safe_load((ROOT / "serve_config.cpu.yaml").read_text())
    args = config["applications"][0]["args"]
    for section, values in overrides.items():
        args[section] = {**args.get(section, {}), **values}
    return args


S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "serve-app-test", "AWS_SECRET_ACCESS_KEY": "serve-app-test"}


def small_app_args(s3: SeaweedFS | None = None, **sections: dict) -> dict:
    """The CPU app with one small replica per deployment (beside the session's app on 2 cores);
    with ``s3``, storage there and a Jobs deployment, the replicas that talk to it given its
    credentials. ``sections`` are merged over that, as ``cpu_args`` does."""
    small = {"ray_actor_options": {"num_cpus": 0.05}, "num_replicas": 1}
    with_s3 = {
        "ray_actor_options": {"num_cpus": 0.05, "runtime_env": {"env_vars": S3_CREDENTIALS}},
        "num_replicas": 1,
    }
    front = with_s3 if s3 is not None else small
    args = cpu_args(
        layout={"deployment": small}, recognizer={"deployment": small}, ingress={"deployment": front}
    )
    if s3 is not None:
        args["jobs"] = {"deployment": with_s3}
        args["storage"] = {"endpoint_url": s3.endpoint_url, "bucket": "ocr-results", "timeout_s": 2}
    for section, values in sections.items():
        args[section] = {**args.get(section, {}), **values}
    return args


def deploy(base_url: str, name: str, args: dict) -> str:
    """``args`` deployed beside the session's app as ``name`` (at ``/name``), ready: its URL."""
    from ray import serve

    from serve_app.app import build_app

    serve.run(build_app(args), name=name, route_prefix=f"/{name}")
    wait_for(lambda: answers_200(f"{base_url}/{name}/ready"), timeout_s=180)
    return f"{base_url}/{name}"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A real S3 (SeaweedFS on 127.0.0.1) for one test module, with bucket ``ocr-results``."""
    for key, value in S3_CREDENTIALS.items():  # boto3 in this process (replicas get them in runtime_env)
        os.environ.setdefault(key, value)
    server = SeaweedFS(tmp_path_factory.mktemp("s3"), bucket="ocr-results")
    server.start()
    yield server
    server.stop()


METRICS_PORT = free_port()  # where the session's Ray metrics agent serves Prometheus' text


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    os.environ["RAY_AUTH_MODE"] = "disabled"
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=False,
        _metrics_export_port=METRICS_PORT,
    )
    yield
    ray.shutdown()


def scraped(
    until: Callable[[dict[str, list[tuple[dict[str, str], float]]]], bool], timeout_s: float = 60
) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The samples Ray's metrics agent serves (name -> [(labels, value)]), scraped as Prometheus
    does until ``until`` holds of them (the agent exports every few seconds)."""
    from prometheus_client.parser import text_string_to_metric_families

    seen: dict[str, list[tuple[dict[str, str], float]]] = {}

    def scrape() -> bool:
        text = httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10).text
        seen.clear()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                seen.setdefault(sample.name, []).append((sample.labels, sample.value))
        return until(seen)

    wait_for(scrape, timeout_s=timeout_s, every_s=1)
    return seen


def metric_total(seen: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for have, v in seen.get(name, []) if labels.items() <= have.items())


@pytest.fixture(scope="session")
def base_url(ray_session) -> Iterator[str]:
    from ray import serve

    from serve_app.app import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    url = f"http://127.0.0.1:{port}"
    serve.run(build_app(cpu_args()), name="ocr", route_prefix="/")

    wait_for(lambda: answers_200(url + "/ready"))
    yield url
    serve.shutdown()


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=120) as c:
        yield c
