"""Thin Serve deployments: each loads its engine in ``__init__`` (so Serve routes nothing to a replica
before its model is loaded), reports the engine's health, and forwards calls. What the HTTP API and
the job runners hold of them (clients over DeploymentHandles, readiness) is ``serve_backend``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, replace
from typing import Any

import numpy as np
from ray import serve
from ray.serve import metrics
from ray.serve.handle import DeploymentHandle

from .api import create_api
from .auth import exposure_warning
from .config import AppArgs, CpuRecognizerArgs, PaddleLayoutArgs, RapidLayoutArgs, VllmRecognizerArgs
from .datatypes import ChatReply, ChatTurn, Recognition, RecognizeRequest, Region
from .engines import build_layout, build_recognizer
from .engines.swap import Swapper
from .job_runner import JobRunner
from .local import LocalLayout
from .metrics import BOUNDARIES, METRICS, Meter
from .serve_backend import ServeBackend
from .storage import Storage

logger = logging.getLogger("ray.serve.serve_app")

STREAM_FLUSH_S = 0.05
JOB_LOOP_STOP_S = 10.0


class ServeMeter(Meter):
    """``ray.serve.metrics``, made once per replica (Ray registers a metric per process)."""

    def __init__(self) -> None:
        self._metrics: dict[str, Any] = {}
        for m in METRICS.values():
            tags: Any = m.tags  # Ray's hint says tuple[str], any length is meant
            if m.kind == "histogram":
                self._metrics[m.name] = metrics.Histogram(m.name, m.description, BOUNDARIES[m.name], tags)
            else:
                kind = metrics.Counter if m.kind == "counter" else metrics.Gauge
                self._metrics[m.name] = kind(m.name, m.description, tags)

    def record(self, name: str, value: float, tags: dict[str, str] | None = None) -> None:
        super().record(name, value, tags)
        metric, kind = self._metrics[name], METRICS[name].kind
        if kind == "counter":
            metric.inc(value, tags)
        elif kind == "gauge":
            metric.set(value, tags)
        else:
            metric.observe(value, tags)


class LayoutDeployment:
    def __init__(self, args: RapidLayoutArgs | PaddleLayoutArgs) -> None:
        started = time.perf_counter()
        self._engine = build_layout(args)
        self._engine.start()
        self._layout = LocalLayout(self._engine)
        logger.info("layout model loaded in %.1f s", time.perf_counter() - started)

    def check_health(self) -> None:
        self._engine.check_health()

    async def detect(self, image: np.ndarray) -> list[Region]:
        return await self._layout.detect(image)

    def info(self) -> dict[str, Any]:
        return asdict(self._engine.info())


class RecognizerDeployment:
    """One recognizer, or a swap group of them (engines/swap.py): every call names its model, the
    first one's by default."""

    # Serve awaits an async constructor: the models start on the replica's event loop.
    async def __init__(self, recognizers: dict[str, CpuRecognizerArgs | VllmRecognizerArgs]):  # type: ignore[misc]
        started = time.perf_counter()
        wait_s = {
            n: a.swap_wait_s if isinstance(a, VllmRecognizerArgs) else 0.0 for n, a in recognizers.items()
        }
        self._models = Swapper({name: build_recognizer(a) for name, a in recognizers.items()}, wait_s)
        await self._models.start()
        self._meter = ServeMeter()
        logger.info("recognizer models loaded in %.1f s", time.perf_counter() - started)

    def check_health(self) -> None:
        self._models.check_health()

    async def recognize(
        self, requests: list[RecognizeRequest], model: str | None = None
    ) -> list[Recognition]:
        async with self._models.use(model) as engine:
            recognitions = await engine.recognize(requests)
        for r in recognitions:
            if r.tokens:
                self._meter.record("serve_app_vlm_completion_tokens", r.tokens)
        return recognitions

    def check_lang(self, lang: str, model: str | None = None) -> str:
        return self._models.engine(model).check_lang(lang)

    async def chat(
        self, turns: list[ChatTurn], max_tokens: int, temperature: float, model: str | None = None
    ) -> ChatReply:
        async with self._models.use(model) as engine:
            return await engine.chat(turns, max_tokens, temperature)

    async def chat_stream(
        self, turns: list[ChatTurn], max_tokens: int, temperature: float, model: str | None = None
    ) -> AsyncIterator[ChatReply]:
        """Pieces of at least ``STREAM_FLUSH_S`` each: one Ray object per token would cost more than
        the token; a reader sees no difference at 20 pieces a second."""
        pending: ChatReply | None = None
        flushed = time.monotonic()
        async with self._models.use(model) as engine:
            async for piece in engine.chat_stream(turns, max_tokens, temperature):
                pending = piece if pending is None else replace(piece, text=pending.text + piece.text)
                if piece.finish_reason is not None or time.monotonic() - flushed >= STREAM_FLUSH_S:
                    yield pending
                    pending, flushed = None, time.monotonic()
        if pending is not None:
            yield pending

    def info(self, model: str | None = None) -> dict[str, Any]:
        return asdict(self._models.engine(model).info())

    def states(self) -> dict[str, Any]:
        return self._models.states()

    def __del__(self) -> None:
        for engine in self._models.engines.values():
            engine.shutdown()


class JobsDeployment:
    """Runs queued jobs (state in S3) over the model deployments; see ``job_runner.JobRunner``."""

    # Serve awaits an async constructor (on the replica's event loop, where the job loop runs).
    async def __init__(  # type: ignore[misc]
        self, layout: DeploymentHandle | None, recognizers: dict[str, DeploymentHandle], args: AppArgs
    ):
        assert args.storage is not None
        backend = ServeBackend(layout, recognizers, _placement(args))
        self._runner = JobRunner(args, Storage(args.storage), backend, ServeMeter())
        self._loop = asyncio.create_task(self._runner.run_forever())

    def check_health(self) -> None:
        if self._loop.done():
            raise RuntimeError(f"the job loop stopped: {self._loop.exception()!r}")

    def wake(self) -> None:
        self._runner.wake()

    async def __del__(self) -> None:
        """A graceful stop (downscaling, a new version) hands its jobs back to the queue. The loop
        ends its round first: cancelled inside a claim, it could leave a job leased to nobody."""
        self._runner.stop()
        try:
            await asyncio.wait_for(asyncio.shield(self._loop), JOB_LOOP_STOP_S)
        except (TimeoutError, asyncio.CancelledError):
            self._loop.cancel()
        except Exception:
            pass  # already reported by check_health
        await self._runner.release()


def _placement(args: AppArgs) -> dict[str, str]:
    return {name: args.deployment_of(name) for name in args.recognizers}


def _proxy_host() -> str | None:
    """The host Serve's HTTP proxies bind. Serve has no public call for it; its controller client
    holds the options it was started with."""
    try:
        client = serve.context._get_global_client(raise_if_no_controller_running=False)
        return client.http_config.host if client is not None else None
    except Exception:  # a changed private API costs only the warning
        return None


@serve.ingress()
class IngressDeployment:
    def __init__(
        self,
        layout: DeploymentHandle | None,
        recognizers: dict[str, DeploymentHandle],
        jobs: DeploymentHandle | None,
        args: AppArgs,
    ):
        self._args = args
        self._backend = ServeBackend(layout, recognizers, _placement(args), jobs)
        if warning := exposure_warning(_proxy_host(), args.auth):
            logger.warning(warning)

    def __serve_build_asgi_app__(self) -> Any:
        return create_api(self._args, self._backend, ServeMeter())
