"""The shipped configs parse with Serve's and Ray's own schemas, and their args with AppArgs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from serve_app.config import AppArgs, gpu_budgets, load_args

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "deploy/examples").glob("*.yaml"))
GPU_CONFIGS = ["serve_config.yaml", *EXAMPLES]


def load(name: str) -> dict:
    if name == "deploy/rayservice.yaml":
        service = yaml.safe_load((ROOT / name).read_text())
        return yaml.safe_load(service["spec"]["serveConfigV2"])
    return yaml.safe_load((ROOT / name).read_text())


def app_args(name: str) -> AppArgs:
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(load(name))
    (app,) = schema.applications
    assert app.import_path == "serve_app.app:build_app"
    return load_args(app.args, environ={})  # what build_app does at deploy time, budgets included


@pytest.mark.parametrize("name", GPU_CONFIGS)
def test_gpu_configs_put_every_model_on_a_gpu_share_within_its_budget(name: str) -> None:
    args = app_args(name)
    assert args.gpu is not None
    budgets = gpu_budgets(args)
    assert "recognizer" in budgets and ("layout" in budgets) == args.uses_layout
    for budget, share in budgets.values():
        assert 0 < share <= 1 and budget <= share * (args.gpu.limit_gb or args.gpu.card_gb)
    # The model deployments fit one card together (a swap group's replica counts once).
    held = [next(iter(models.values())) for models in args.recognizer_deployments.values()]
    shares = [
        s.deployment.ray_actor_options.get("num_gpus", 0)
        for s in [*held, *([args.layout] if args.uses_layout else [])]
    ]
    assert sum(shares) <= 1
    for rec in args.recognizers.values():
        if rec.engine == "cpu":  # the CPU reader beside the VLMs (route_by_script's fallback)
            continue
        assert rec.gpu_memory_utilization == pytest.approx(rec.gpu_budget_gb / args.gpu.card_gb, abs=1e-4)
        assert rec.deployment.max_ongoing_requests >= 64  # Serve's default 5 would starve vLLM


def test_the_cpu_config_fits_a_two_core_machine() -> None:
    args = app_args("serve_config.cpu.yaml")
    sections = (args.layout, args.recognizer, args.ingress)
    cpus = sum(s.deployment.ray_actor_options["num_cpus"] for s in sections)
    assert cpus < 2 and args.gpu is None


def test_the_kuberay_service_deploys_serve_config_yaml() -> None:
    assert load("deploy/rayservice.yaml") == load("serve_config.yaml")  # one config, not two copies
    app_args("deploy/rayservice.yaml")


def test_build_app_applies_the_deployment_options() -> None:
    from serve_app.app import build_app

    app = build_app(load("serve_config.yaml")["applications"][0]["args"])
    ingress = app._bound_deployment
    assert ingress.name == "Ingress"
    layout, recognizers = ingress.init_args[:2]
    recognizer = recognizers["Recognizer"]
    assert layout._bound_deployment.ray_actor_options["num_gpus"] == 0.25
    assert recognizer._bound_deployment.ray_actor_options["num_gpus"] == 0.75
    assert recognizer._bound_deployment.max_ongoing_requests == 64
    assert recognizer._bound_deployment._deployment_config.graceful_shutdown_timeout_s == 90
    dots = build_app(load("deploy/examples/gpu-16gb-dots-ocr.yaml")["applications"][0]["args"])
    assert dots._bound_deployment.init_args[0] is None  # no Layout deployment for a page reader
    # A list: each recognizer its own deployment, with its own options.
    args = load("serve_config.cpu.yaml")["applications"][0]["args"]
    second = {"engine": "vllm", "model": "/models/PaddleOCR-VL", "deployment": {"max_ongoing_requests": 5}}
    two = build_app({**args, "recognizer": [args["recognizer"], second]})._bound_deployment.init_args[1]
    assert {name: d._bound_deployment.name for name, d in two.items()} == {
        "Recognizer": "Recognizer",
        "Recognizer-2": "Recognizer-2",
    }
    assert two["Recognizer-2"]._bound_deployment.max_ongoing_requests == 5
    # Those that do not fit the card together: one deployment holds them, with the first one's share.
    swap = build_app(load("deploy/examples/gpu-80gb-swap.yaml")["applications"][0]["args"])
    held = swap._bound_deployment.init_args[1]
    assert list(held) == ["Recognizer", "Recognizer-2", "Recognizer-3"]
    qwens = held["Recognizer-3"]._bound_deployment
    assert list(qwens.init_args[0]) == ["qwen3-vl-8b", "qwen3-vl-32b"]
    assert qwens.ray_actor_options["num_gpus"] == 0.5


def test_cluster_yaml_passes_rays_validator() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # what `ray up` runs before touching a cloud
    gpu = config["available_node_types"]["gpu_worker"]["resources"]
    assert gpu["GPU"] >= 1
