"""The shipped configs parse with Serve's and Ray's own schemas, and their args with AppArgs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from serve_app.config import AppArgs

ROOT = Path(__file__).parents[2]


def load(name: str) -> dict:
    if name == "deploy/rayservice.yaml":
        service = yaml.safe_load((ROOT / name).read_text())
        return yaml.safe_load(service["spec"]["serveConfigV2"])
    return yaml.safe_load((ROOT / name).read_text())


@pytest.mark.parametrize("name", ["serve_config.yaml", "serve_config.cpu.yaml", "deploy/rayservice.yaml"])
def test_serve_configs_are_valid(name: str) -> None:
    from ray.serve.schema import ServeDeploySchema

    config = load(name)
    schema = ServeDeploySchema.model_validate(config)
    (app,) = schema.applications
    assert app.import_path == "serve_app.app:build_app"
    args = AppArgs.model_validate(app.args)
    if name != "serve_config.cpu.yaml":
        gpus = [
            args.layout.deployment.ray_actor_options["num_gpus"],
            args.recognizer.deployment.ray_actor_options["num_gpus"],
        ]
        assert all(0 < g < 1 for g in gpus) and sum(gpus) <= 1  # two deployments share a card
    else:
        cpus = sum(
            d.deployment.ray_actor_options["num_cpus"] for d in (args.layout, args.recognizer, args.ingress)
        )
        assert cpus < 2  # the embedded default must fit a 2-core machine


def test_build_app_applies_the_deployment_options() -> None:
    from serve_app.app import build_app

    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    app = build_app(config["applications"][0]["args"])
    ingress = app._bound_deployment
    assert ingress.name == "Ingress"
    layout, recognizer = ingress.init_args[:2]
    assert layout._bound_deployment.ray_actor_options["num_gpus"] == 0.25
    assert recognizer._bound_deployment.max_ongoing_requests == 16


def test_cluster_yaml_passes_rays_validator() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # what `ray up` runs before touching a cloud
    gpu = config["available_node_types"]["gpu_worker"]["resources"]
    assert gpu["GPU"] >= 1
