"""The app on a real three-node Ray cluster (a head and two workers, each its own raylet), deployed
with `serve deploy` through the dashboard as an operator does: the models land on the workers, the
proxy, controller and ingress on the head; a worker lost under load costs no request a 500 or a
hang, its replicas come back on the other worker, and the time that takes is printed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cluster.nodes import Cluster, Node
from tests.load import Load
from tests.serve_fixtures import ROOT, answers_200, free_port, wait_for

CLIENTS = 4
MODELS = ("Layout", "Recognizer")
# The shape of a GPU cluster: only the workers have what the models ask for (here a custom resource
# standing in for GPUs), and the front end is pinned to the head, which has no models.
MODEL_NODE, FRONT_NODE = {"model_node": 1}, {"front_node": 1}


def cluster_config(port: int) -> dict:
    """serve_config.cpu.yaml as a cluster's config: the models need a model node, the ingress the head."""
    config = yaml.safe_load((ROOT / "serve_config.cpu.yaml").read_text())
    config["http_options"] = {"host": "127.0.0.1", "port": port}
    config["proxy_location"] = "HeadOnly"  # one proxy: every node shares 127.0.0.1 here
    args = config["applications"][0]["args"]
    # A quarter each: both models fit on one worker when the other is lost.
    for section in ("layout", "recognizer"):
        args[section]["deployment"]["ray_actor_options"]["resources"] = {"model_node": 0.25}
    args["ingress"]["deployment"]["ray_actor_options"]["resources"] = {"front_node": 0.1}
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
def url(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    port = free_port()
    path = Path(tmp_path_factory.mktemp("config")) / "serve_config.yaml"
    path.write_text(yaml.safe_dump(cluster_config(port)))
    deployed = cluster.serve("deploy", str(path))
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers_200(f"{url}/ready"), timeout_s=180)
    return url


def placement(cluster: Cluster) -> dict[str, set[str]]:
    """Node ids by Serve actor: the controller, the proxies and each deployment's running replicas."""
    details = cluster.serve_details()
    where = {"controller": {details["controller_info"]["node_id"]}, "proxy": set(details["proxies"])}
    for name, deployment in details["applications"]["ocr"]["deployments"].items():
        where[name] = {r["node_id"] for r in deployment["replicas"] if r["state"] == "RUNNING"}
    return where


def test_serve_deploy_puts_the_models_on_the_workers_and_the_front_on_the_head(
    cluster: Cluster, url: str
) -> None:
    head, *workers = (node.node_id for node in cluster.nodes)
    where = placement(cluster)
    assert where["controller"] == where["proxy"] == where["Ingress"] == {head}, where
    for name in MODELS:
        assert len(where[name]) == 1 and where[name] <= set(workers), (name, where)
    status = cluster.serve("status")
    assert status.returncode == 0 and "status: RUNNING" in status.stdout, status.stdout


def test_a_worker_node_lost_under_load_loses_no_request_and_its_replicas_come_back(
    cluster: Cluster, url: str
) -> None:
    head, *workers = cluster.nodes
    (victim_id,) = placement(cluster)["Recognizer"]
    victim: Node = next(n for n in workers if n.node_id == victim_id)
    (survivor,) = (n for n in workers if n is not victim)
    with Load(url, CLIENTS) as load:
        wait_for(lambda: load.ok_since(0) >= 3, timeout_s=120)
        victim.kill()
        lost = time.monotonic()
        wait_for(lambda: victim_id not in {n["node_id"] for n in cluster.alive_nodes()}, timeout_s=120)
        noticed = time.monotonic()

        def back() -> bool:
            where = placement(cluster)
            return all(where[name] == {survivor.node_id} for name in MODELS) and answers_200(f"{url}/ready")

        wait_for(back, timeout_s=180)
        recovered = time.monotonic()
        wait_for(lambda: load.ok_since(recovered) >= 3, timeout_s=120)  # pages are read again
    assert not any(t.is_alive() for t in load.threads), "a client got no answer"
    assert not load.wrong, load.wrong[:5]
    first_ok = min(answered for sent, answered, status in load.outcomes if sent > lost and status == 200)
    where = placement(cluster)
    assert where["controller"] == where["proxy"] == where["Ingress"] == {head.node_id}, where
    print(
        f"\nworker node lost: dead to the cluster after {noticed - lost:.1f} s, models back and /ready "
        f"200 after {recovered - lost:.1f} s, first page read (sent after the loss) after "
        f"{first_ok - lost:.1f} s; "
        f"{CLIENTS} clients, outcomes {load.counts()}, after the loss {load.counts(since=lost)}"
    )
