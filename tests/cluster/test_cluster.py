"""The app on a real three-node Ray cluster (a head and two workers, each its own raylet), with jobs
in a real S3, deployed with `serve deploy` through the dashboard as an operator does: the models land
on the workers, the proxy, controller, ingress and job runners on the head; a worker lost under load
costs no request a 500 or a hang, its replicas come back on the other worker, the jobs it was reading
finish with one result each, and the time to recover is printed; with two replicas of each deployment
on the request path, a changed config rolled out and rolled back (`serve deploy` of the previous
file) under load answers every request with its page and the jobs running across it finish with
one result each; a node that joins takes the Recognizer's
second replica when a step of load asks for it, removed when the load ends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from scripts.s3_dev import SeaweedFS
from tests.cluster.nodes import Cluster, Node
from tests.conftest import reads_phototest
from tests.load import Load
from tests.serve_fixtures import (
    ROOT,
    S3_CREDENTIALS,
    answers_200,
    complete_result,
    finished,
    free_port,
    queue_pages,
    stored_files,
    wait_for,
    wait_job,
)

# As many as the ingress admits at once (ingress.max_documents): a 503 is then the cluster's doing,
# never the clients' backpressure.
CLIENTS = 3
JOBS, JOB_PAGES = 2, 8
ROLLOUT_JOB_PAGES = 24  # enough to be read across a rollout and its rollback (~30 s each)
MODELS = ("Layout", "Recognizer")
# The shape of a GPU cluster: only the workers have what the models ask for (here a custom resource
# standing in for GPUs), and the front end is pinned to the head, which has no models.
MODEL_NODE, FRONT_NODE = {"model_node": 1}, {"front_node": 1}


def cluster_config(port: int, s3: SeaweedFS) -> dict:
    """serve_config.cpu.yaml as a cluster's config, storage in ``s3``: the models need a model node,
    the ingress and the job runners the head."""
    config = yaml.safe_load((ROOT / "serve_config.cpu.yaml").read_text())
    config["http_options"] = {"host": "127.0.0.1", "port": port}
    config["proxy_location"] = "HeadOnly"  # one proxy: every node shares 127.0.0.1 here
    args = config["applications"][0]["args"]
    # A quarter each: both models fit on one worker when the other is lost.
    for section in ("layout", "recognizer"):
        args[section]["deployment"]["ray_actor_options"]["resources"] = {"model_node": 0.25}
    args["storage"] = {"endpoint_url": s3.endpoint_url, "bucket": "ocr-results", "timeout_s": 2}
    # Short leases and one page a slice: a job is mid-document when its models' node is lost.
    args["jobs"].update(lease_s=4, poll_s=0.5, slice_pages=1)
    for section in ("ingress", "jobs"):
        args[section]["deployment"]["ray_actor_options"].update(
            resources={"front_node": 0.1}, runtime_env={"env_vars": S3_CREDENTIALS}
        )
    return config


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    cluster = Cluster()
    try:
        # Logical CPUs: the machine has 2 cores, each node counts 2 as a real node counts its own.
        cluster.start_head(cpus=2, resources=FRONT_NODE)
        cluster.add_worker(cpus=2, resources=MODEL_NODE)
        cluster.add_worker(cpus=2, resources=MODEL_NODE)
        yield cluster
    finally:
        if cluster.nodes:
            cluster.serve("shutdown", "--yes", timeout_s=60)
        cluster.shutdown()


@pytest.fixture(scope="module")
def config_file(s3: SeaweedFS, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The config first deployed (the one a rollback goes back to)."""
    path = Path(tmp_path_factory.mktemp("config")) / "serve_config.yaml"
    path.write_text(yaml.safe_dump(cluster_config(free_port(), s3)))
    return path


@pytest.fixture(scope="module")
def url(cluster: Cluster, config_file: Path) -> str:
    deploy(cluster, config_file)
    url = f"http://127.0.0.1:{yaml.safe_load(config_file.read_text())['http_options']['port']}"
    wait_for(lambda: answers_200(f"{url}/ready"), timeout_s=180)
    return url


def deploy(cluster: Cluster, config_file: Path) -> None:
    deployed = cluster.serve("deploy", str(config_file))
    assert deployed.returncode == 0, deployed.stderr[-3000:]


def placement(cluster: Cluster) -> dict[str, set[str]]:
    """Node ids by Serve actor: the controller, the proxies and each deployment's running replicas."""
    details = cluster.serve_details()
    where = {"controller": {details["controller_info"]["node_id"]}, "proxy": set(details["proxies"])}
    for name, deployment in details["applications"]["ocr"]["deployments"].items():
        where[name] = {r["node_id"] for r in deployment["replicas"] if r["state"] == "RUNNING"}
    return where


def on_the_head(where: dict[str, set[str]], head: str) -> bool:
    return where["controller"] == where["proxy"] == where["Ingress"] == where["Jobs"] == {head}


def test_serve_deploy_puts_the_models_on_the_workers_and_the_front_on_the_head(
    cluster: Cluster, url: str
) -> None:
    head, *workers = (node.node_id for node in cluster.nodes)
    where = placement(cluster)
    assert on_the_head(where, head), where
    for name in MODELS:
        assert len(where[name]) == 1 and where[name] <= set(workers), (name, where)
    status = cluster.serve("status")
    assert status.returncode == 0 and "status: RUNNING" in status.stdout, status.stdout


def test_a_worker_node_lost_under_load_loses_no_request_and_no_job(
    cluster: Cluster, url: str, s3: SeaweedFS
) -> None:
    head, *workers = cluster.nodes
    (victim_id,) = placement(cluster)["Recognizer"]
    victim: Node = next(n for n in workers if n.node_id == victim_id)
    (survivor,) = (n for n in workers if n is not victim)
    jobs = [queue_pages(url, JOB_PAGES) for _ in range(JOBS)]
    views: list[dict] = []
    with Load(url, CLIENTS) as load, httpx.Client(base_url=url, timeout=10) as client:

        def reading() -> bool:  # every job has read a page, and every client too
            views[:] = [client.get(f"/v1/jobs/{job}").json() for job in jobs]
            return load.ok_since(0) >= CLIENTS and all(v["progress"]["pages_done"] >= 1 for v in views)

        wait_for(reading, timeout_s=120)
        victim.kill()
        lost = time.monotonic()
        wait_for(lambda: victim_id not in {n["node_id"] for n in cluster.alive_nodes()}, timeout_s=120)
        noticed = time.monotonic()

        def back() -> bool:
            where = placement(cluster)
            return all(where[name] == {survivor.node_id} for name in MODELS) and answers_200(f"{url}/ready")

        wait_for(back, timeout_s=180)
        recovered = time.monotonic()
        wait_for(lambda: load.ok_since(recovered) >= CLIENTS, timeout_s=120)  # pages are read again
    assert not any(t.is_alive() for t in load.threads), "a client got no answer"
    assert not load.wrong, load.wrong[:5]
    first_ok = min(answered for sent, answered, status in load.outcomes if sent > lost and status == 200)
    assert on_the_head(placement(cluster), head.node_id)
    print(
        f"\nworker node lost: dead to the cluster after {noticed - lost:.1f} s, models back and /ready "
        f"200 after {recovered - lost:.1f} s, first page read (sent after the loss) after "
        f"{first_ok - lost:.1f} s; "
        f"{CLIENTS} clients, outcomes {load.counts()}, after the loss {load.counts(since=lost)}, "
        f"{dict(load.problems)}"
    )

    at_loss = [v["progress"]["pages_done"] for v in views]
    assert all(n < JOB_PAGES for n in at_loss), at_loss  # the jobs were mid-document
    for job in jobs:
        done = wait_job(url, job, finished, timeout_s=240)
        assert done["status"] == "succeeded", done
        assert done["progress"] == {"pages_done": JOB_PAGES, "pages_total": JOB_PAGES}
        assert stored_files(s3, done["result"]["key"]) == complete_result(JOB_PAGES)
        result = httpx.get(done["result"]["json_url"], timeout=10).json()
        assert all(reads_phototest(p["text"]) for p in result["pages"])
    print(f"{JOBS} jobs of {JOB_PAGES} pages ({at_loss} read at the loss): each succeeded, one result")


def replica_ids(cluster: Cluster) -> dict[str, set[str]]:
    """Each deployment's replicas (any state) by id."""
    deployments = cluster.serve_details()["applications"]["ocr"]["deployments"]
    return {name: {r["replica_id"] for r in d["replicas"]} for name, d in deployments.items()}


def rolled(cluster: Cluster, old: dict[str, set[str]], clean_confidence: int) -> bool:
    """The config with ``clean_confidence`` is running: every deployment healthy with new replicas
    only (a change of ``args`` is a new code version of the whole app to Serve), none starting or
    stopping."""
    app = cluster.serve_details()["applications"]["ocr"]
    deployments = app["deployments"].values()
    return (
        app["status"] == "RUNNING"
        and app["deployed_app_config"]["args"]["recognizer"]["clean_confidence"] == clean_confidence
        and all(d["status"] == "HEALTHY" for d in deployments)
        and all(r["state"] == "RUNNING" and r["replica_id"] not in old[d["name"]]
                for d in deployments for r in d["replicas"])
    )  # fmt: skip


def with_replicas(config: dict, n: int) -> dict:
    """``config`` with ``n`` replicas of every deployment on the request path."""
    args = config["applications"][0]["args"]
    for section in ("layout", "recognizer"):
        args[section]["deployment"]["autoscaling_config"].update(min_replicas=n, max_replicas=n)
    args["ingress"]["deployment"]["num_replicas"] = n
    return config


def running(cluster: Cluster, replicas: int) -> bool:
    """Every deployment on the request path has ``replicas`` replicas, all running (a deployment
    being built anew is not listed yet)."""
    deployments = cluster.serve_details()["applications"]["ocr"]["deployments"]
    states = [
        [r["state"] for r in deployments.get(name, {}).get("replicas", [])] for name in (*MODELS, "Ingress")
    ]
    return all(s == ["RUNNING"] * replicas for s in states)


def test_a_changed_config_rolled_out_and_rolled_back_under_load_fails_no_request_and_no_job(
    cluster: Cluster, url: str, config_file: Path, tmp_path: Path, s3: SeaweedFS
) -> None:
    # Two replicas of each deployment on the request path (the models on the worker left by the
    # node loss above): Serve replaces them one at a time, so one always serves.
    config = with_replicas(yaml.safe_load(config_file.read_text()), 2)
    two = tmp_path / "two-replicas.yaml"
    two.write_text(yaml.safe_dump(config))
    deploy(cluster, two)
    wait_for(lambda: running(cluster, 2) and answers_200(f"{url}/ready"), timeout_s=240)
    old_value = config["applications"][0]["args"]["recognizer"]["clean_confidence"]
    config["applications"][0]["args"]["recognizer"]["clean_confidence"] = old_value - 5  # a new option value
    upgraded = tmp_path / "upgraded.yaml"
    upgraded.write_text(yaml.safe_dump(config))
    took: dict[str, float] = {}
    # Jobs mid-document as the job runner is replaced too (a new version of the app replaces every
    # deployment): each must end with one complete result, its leased slices read again.
    jobs = [queue_pages(url, ROLLOUT_JOB_PAGES) for _ in range(JOBS)]
    with Load(url, CLIENTS) as load, httpx.Client(base_url=url, timeout=10) as client:

        def progress() -> list[int]:
            return [client.get(f"/v1/jobs/{job}").json()["progress"]["pages_done"] for job in jobs]

        wait_for(lambda: load.ok_since(0) >= CLIENTS and min(progress()) >= 1, timeout_s=120)
        at_rollout = progress()
        read_by: dict[str, list[int]] = {}
        for step, path, value in (("rollout", upgraded, old_value - 5), ("rollback", two, old_value)):
            old = replica_ids(cluster)
            started = time.monotonic()
            deploy(cluster, path)
            wait_for(lambda: rolled(cluster, old, value), timeout_s=300)  # noqa: B023 (called here)
            took[step] = time.monotonic() - started
            read_by[step] = progress()  # below the total: the jobs outlived the old job runner
            wait_for(lambda: load.ok_since(started + took[step]) >= CLIENTS, timeout_s=120)  # noqa: B023
            assert replica_ids(cluster).keys() == old.keys()
    assert not any(t.is_alive() for t in load.threads), "a client got no answer"
    assert not load.wrong, load.wrong[:5]
    print(
        f"\nrolled out in {took['rollout']:.1f} s and back in {took['rollback']:.1f} s under {CLIENTS} "
        f"clients, two replicas a deployment: outcomes {load.counts()}, {dict(load.problems)}"
    )
    assert load.counts() == {200: len(load.outcomes)}, dict(load.problems)  # not one 503 or 504
    assert all(n < ROLLOUT_JOB_PAGES for n in at_rollout), at_rollout  # mid-document at the rollout
    for job in jobs:
        done = wait_job(url, job, finished, timeout_s=240)
        assert done["status"] == "succeeded", done
        assert done["progress"] == {"pages_done": ROLLOUT_JOB_PAGES, "pages_total": ROLLOUT_JOB_PAGES}
        assert stored_files(s3, done["result"]["key"]) == complete_result(ROLLOUT_JOB_PAGES)
    print(
        f"{JOBS} jobs of {ROLLOUT_JOB_PAGES} pages ({at_rollout} read at the rollout, {read_by['rollout']} "
        f"when it ended, {read_by['rollback']} when the rollback ended): one result each"
    )


def recognizers(cluster: Cluster) -> tuple[int, list[str], str]:
    """The Recognizer's target replica count, its running replicas' nodes, and its status message."""
    d = cluster.serve_details()["applications"]["ocr"]["deployments"].get("Recognizer", {})
    nodes = [r["node_id"] for r in d.get("replicas", []) if r["state"] == "RUNNING"]
    return d.get("target_num_replicas", 0), nodes, f"{d.get('status')}: {d.get('message', '')}"


def wait_recognizers(cluster: Cluster, n: int, timeout_s: float) -> float:
    """Seconds until the Recognizer's target is ``n`` and ``n`` replicas run; on a timeout, what
    Serve said (its target, its replicas' nodes, its status) rather than a bare TimeoutError."""
    started = time.monotonic()

    def there() -> bool:
        target, nodes, _ = recognizers(cluster)
        return target == n and len(nodes) == n

    try:
        wait_for(there, timeout_s=timeout_s)
    except TimeoutError:
        pytest.fail(f"not {n} Recognizer replicas after {timeout_s} s: {recognizers(cluster)}")
    return time.monotonic() - started


def test_a_step_of_load_adds_a_recognizer_on_another_worker_and_its_end_removes_it(
    cluster: Cluster, url: str, config_file: Path, tmp_path: Path
) -> None:
    # A node joins in place of the one lost above (as KubeRay's autoscaler would add one), and the
    # Recognizer may grow to one replica a worker when pages wait for it.
    cluster.add_worker(cpus=2, resources=MODEL_NODE)
    config = yaml.safe_load(config_file.read_text())
    recognizer = config["applications"][0]["args"]["recognizer"]["deployment"]
    recognizer["max_replicas_per_node"] = 1  # the second replica on the other worker
    # A new config is a new version of the whole app (Serve hashes args), whose replica target
    # starts where the last one ended unless initial_replicas says otherwise. 3 clients keep about
    # 2 pages at the Recognizer, so a target of 0.5 a replica asks for 2 beyond doubt.
    recognizer["autoscaling_config"] = {
        "min_replicas": 1, "max_replicas": 2, "initial_replicas": 1, "target_ongoing_requests": 0.5,
        "upscale_delay_s": 1, "downscale_delay_s": 10, "look_back_period_s": 2, "metrics_interval_s": 0.5,
    }  # fmt: skip
    path = tmp_path / "autoscaled.yaml"
    path.write_text(yaml.safe_dump(config))
    deploy(cluster, path)
    wait_for(lambda: cluster.serve_details()["applications"]["ocr"]["status"] == "RUNNING", timeout_s=240)
    wait_recognizers(cluster, 1, timeout_s=120)
    wait_for(lambda: answers_200(f"{url}/ready"), timeout_s=120)
    workers = {node.node_id for node in cluster.nodes[1:]}  # the joined one among them
    with Load(url, CLIENTS) as load:
        up = wait_recognizers(cluster, 2, timeout_s=180)
        where = recognizers(cluster)[1]
    down = wait_recognizers(cluster, 1, timeout_s=180)
    assert len(set(where)) == 2 and set(where) <= workers, (where, workers)
    assert not any(t.is_alive() for t in load.threads), "a client got no answer"
    assert not load.wrong, load.wrong[:5]
    assert load.counts() == {200: len(load.outcomes)}, dict(load.problems)
    print(
        f"\nrecognizers 1 -> 2 after {up:.1f} s of {CLIENTS} clients, on 2 worker nodes; back to 1 "
        f"{down:.1f} s after the load ended: outcomes {load.counts()}"
    )
