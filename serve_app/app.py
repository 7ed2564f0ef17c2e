"""``build_app(args)``: the one entry point for ``serve run`` and ``serve deploy``.

The serve config's ``args:`` block is validated as ``AppArgs`` (unknown keys are errors), then
SERVE_APP_* environment overrides are applied; each deployment gets its options from it.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from .config import AppArgs, load_args
from .deployments import IngressDeployment, JobsDeployment, LayoutDeployment, RecognizerDeployment
from .serve_backend import INGRESS, JOBS, LAYOUT


def build_app(args: dict[str, Any] | None = None) -> Application:
    config: AppArgs = load_args(args or {})
    # A recognizer that lays out whole pages itself (dots.ocr) needs no Layout deployment.
    layout = (
        serve.deployment(name=LAYOUT, **config.layout.deployment.serve_options())(LayoutDeployment).bind(
            config.layout
        )
        if config.uses_layout
        else None
    )
    # Each recognizer is a deployment of its own, with its own options and GPU share; those that
    # swap share one, with the first one's options.
    recognizers = {
        deployment: serve.deployment(name=deployment, **next(iter(held.values())).deployment.serve_options())(
            RecognizerDeployment
        ).bind(held)
        for deployment, held in config.recognizer_deployments.items()
    }
    # Jobs keep their state in S3: with storage configured, runners are deployed beside the models.
    jobs = (
        serve.deployment(name=JOBS, **config.jobs.deployment.serve_options())(JobsDeployment).bind(
            layout, recognizers, config
        )
        if config.storage is not None
        else None
    )
    ingress = serve.deployment(name=INGRESS, **config.ingress.serve_options())(IngressDeployment)
    return ingress.bind(layout, recognizers, jobs, config)
