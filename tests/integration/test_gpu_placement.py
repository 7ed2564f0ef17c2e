"""serve_config.yaml deployed the way `serve deploy` does it, on a Ray node with one (fake) GPU.

Ray only counts GPUs, so a local node started with num_gpus=1 shows the placement a GPU node would
get. The model engines are swapped for the CPU ones (no CUDA here); every deployment option, GPU
share and budget is the production config's. The config goes to Serve's controller through
``deploy_apps``, the call behind `serve deploy` (the dashboard's PUT /api/serve/applications/), so
an over-budget config is refused exactly where a user would see it. Runs in a subprocess: the
session's own Ray has no GPU and cannot be re-initialised.
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
    import copy, json, sys, time
    import ray, yaml
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load(open("serve_config.yaml"))
    (app,) = config["applications"]
    args = app["args"]
    args["layout"] = {"engine": "rapid_layout", "gpu_budget_gb": args["layout"]["gpu_budget_gb"],
                      "deployment": args["layout"]["deployment"]}
    args["recognizer"] = {"engine": "cpu", "deployment": args["recognizer"]["deployment"]}
    over = copy.deepcopy(app)
    over.update(name="over", route_prefix="/over")
    over["args"]["layout"]["gpu_budget_gb"] = 4  # its share is 0.25 x 12 GB = 3 GB
    config["http_options"] = {"host": "127.0.0.1", "port": int(sys.argv[1])}
    config["applications"] = [app, over]

    # Logical CPUs as on a GPU node (the production config asks for 7.5); one GPU, counted only.
    ray.init(num_cpus=8, num_gpus=1, include_dashboard=False, log_to_driver=False)
    serve.start(http_options=config["http_options"])
    _get_global_client().deploy_apps(ServeDeploySchema.model_validate(config))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        apps = serve.status().applications
        states = {name: str(apps[name].status.value) for name in ("ocr", "over") if name in apps}
        if states.get("ocr") in ("RUNNING", "DEPLOY_FAILED") and states.get("over") == "DEPLOY_FAILED":
            break
        time.sleep(1)
    ocr, over = apps["ocr"], apps.get("over")
    out = {
        "app": str(ocr.status.value),
        "running": {n: d.replica_states.get("RUNNING", 0) for n, d in ocr.deployments.items()},
        "gpus_left": ray.available_resources().get("GPU", 0.0),
        "over": str(over.status.value) if over else None,
        "over_message": over.message if over else "",
    }
    print("RESULT " + json.dumps(out))
    serve.shutdown()
    ray.shutdown()
    """
)


def test_serve_deploy_places_both_models_on_one_gpu_and_refuses_an_over_budget_config() -> None:
    from tests.serve_fixtures import free_port

    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ""}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(free_port())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["app"] == "RUNNING"
    assert result["running"] == {"Layout": 1, "Recognizer": 1, "Jobs": 2, "Ingress": 1}
    assert result["gpus_left"] == 0.0  # 0.25 + 0.75 of the one card
    assert result["over"] == "DEPLOY_FAILED"
    assert "layout: gpu_budget_gb 4 GB is more than its share of the card" in result["over_message"]
