"""A real multi-node Ray cluster on this machine, started the way an operator starts one: `ray start
--head` and `ray start --address` processes, each a raylet of its own, with their own ports and temp
folder. Tests talk to it only through the CLIs, the dashboard's REST API and HTTP, so it never meets
the Ray that tests/serve_fixtures.py starts inside pytest. Each node runs `ray start --block` in a
process group of its own: ending that group ends the node (and nothing else on the machine)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from tests.serve_fixtures import ROOT, free_port, wait_for

BIN = Path(sys.executable).parent  # ray and serve of this venv
# Ray's and the app's settings come from the command line and the config only: no RAY_ADDRESS of
# another cluster, no SERVE_APP_ override of this shell.
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "SERVE_APP_"))}
ENV["RAY_AUTH_MODE"] = "disabled"
OBJECT_STORE_BYTES = 200 * 1024 * 1024  # three stores on one machine; pages are a few MB
# `ray start --block` killed when pytest dies, however it dies; Ray's reaper then ends its group.
FATE_SHARE = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []


class Node:
    """One `ray start --block` and everything it starts (raylet, agents, workers: one process group)."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [*FATE_SHARE, str(BIN / "ray"), "start", "--block", "--disable-usage-stats", *args],
                cwd=ROOT, env=ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.node_id = ""

    def kill(self) -> None:
        """The whole node at once (SIGKILL), as when its machine is lost: nothing shuts down cleanly."""
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        wait_for(self._ended, timeout_s=30, every_s=0.1)  # its raylet and workers too, reaped

    def _ended(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return True
        return False


class Cluster:
    """A head (``start_head``) and worker nodes (``add_worker``); ``shutdown`` ends whatever started."""

    def __init__(self) -> None:
        # Short: Ray's unix sockets live under it, and their paths are limited to 107 bytes.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        self.gcs = f"127.0.0.1:{self.gcs_port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self.nodes: list[Node] = []

    def start_head(self, cpus: int, resources: dict[str, float]) -> Node:
        return self._start(
            ["--head", f"--port={self.gcs_port}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
             f"--dashboard-port={self.dashboard_port}", f"--ray-client-server-port={free_port()}"],
            cpus, resources,
        )  # fmt: skip

    def add_worker(self, cpus: int, resources: dict[str, float]) -> Node:
        return self._start([f"--address={self.gcs}"], cpus, resources)

    def _start(self, args: list[str], cpus: int, resources: dict[str, float]) -> Node:
        before = {n["node_id"] for n in self.alive_nodes()} if self.nodes else set()
        node = Node(
            [*args, "--node-ip-address=127.0.0.1", f"--temp-dir={self.temp_dir}",
             f"--num-cpus={cpus}", "--num-gpus=0", f"--resources={json.dumps(resources)}",
             f"--object-store-memory={OBJECT_STORE_BYTES}",
             # Every port its own, so that nodes (and another Ray on the machine) never meet.
             f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
             f"--metrics-export-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
             f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}"],
            self.temp_dir / f"node{len(self.nodes)}.log",
        )  # fmt: skip
        self.nodes.append(node)

        def joined() -> bool:
            if node.process.poll() is not None:
                raise RuntimeError(f"ray start exited: {node.log.read_text()[-3000:]}")
            new = {n["node_id"] for n in self.alive_nodes()} - before
            if len(new) == 1:
                (node.node_id,) = new
            return bool(node.node_id)

        wait_for(joined, timeout_s=90, every_s=0.5)
        return node

    def alive_nodes(self) -> list[dict]:
        """The dashboard's view of the nodes that are alive (node_id, is_head_node, resources_total)."""
        try:
            r = httpx.get(f"{self.dashboard}/api/v0/nodes", params={"detail": "1", "limit": 100}, timeout=10)
        except httpx.HTTPError:
            return []
        if r.status_code != 200:
            return []
        return [n for n in r.json()["data"]["result"]["result"] if n["state"] == "ALIVE"]

    def serve(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        """The `serve` CLI against this cluster's dashboard, as an operator runs it."""
        return subprocess.run(
            [str(BIN / "serve"), *args, f"--address={self.dashboard}"],
            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout_s,
        )  # fmt: skip

    def serve_details(self) -> dict:
        """GET /api/serve/applications/: what `serve status` reads (controller, proxies, replicas)."""
        return httpx.get(f"{self.dashboard}/api/serve/applications/", timeout=10).json()

    def shutdown(self) -> None:
        """Ends every node, workers first, then the head (even after a failed test), and its files."""
        for node in reversed(self.nodes):
            node.kill()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
