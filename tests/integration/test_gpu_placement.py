"""serve_config.yaml on a Ray cluster with one (fake) GPU: both model deployments share the card.

Ray only counts GPUs, so a local cluster started with num_gpus=1 shows the placement a GPU node
would get. Runs in a subprocess: the test session's own Ray has no GPU and cannot be re-initialised.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import ray, yaml
    from ray import serve
    from serve_app.app import build_app

    config = yaml.safe_load(open("serve_config.yaml"))
    args = config["applications"][0]["args"]
    # Logical CPUs as on a GPU node (the production config asks for 6); one GPU, counted only.
    ray.init(num_cpus=8, num_gpus=1, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[1])})
    serve.run(build_app(args), name="ocr", route_prefix="/")
    status = serve.status().applications["ocr"]
    out = {
        "app": str(status.status.value),
        "running": {n: d.replica_states.get("RUNNING", 0) for n, d in status.deployments.items()},
        "gpus_left": ray.available_resources().get("GPU", 0.0),
    }
    print("RESULT " + json.dumps(out))
    serve.shutdown()
    ray.shutdown()
    """
)


def test_layout_and_recognizer_are_placed_on_one_gpu(tmp_path: Path) -> None:
    from tests.integration.conftest import free_port

    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ""}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(free_port())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["app"] == "RUNNING"
    assert result["running"] == {"Layout": 1, "Recognizer": 1, "Ingress": 1}
    assert result["gpus_left"] == 0.0  # 0.25 + 0.75 of the one card
