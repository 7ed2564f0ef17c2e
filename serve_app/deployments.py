"""Thin Serve deployments: each loads its engine in ``__init__`` (so Serve routes nothing to a replica
before its model is loaded), reports the engine's health, and forwards calls. ``ServeBackend``
gives the HTTP API its two clients over DeploymentHandles and the readiness view from Serve.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from typing import Any

import numpy as np
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from .api import create_api
from .backend import Health
from .config import AppArgs, CpuRecognizerArgs, PaddleLayoutArgs, RapidLayoutArgs, VllmRecognizerArgs
from .datatypes import ChatReply, ChatTurn, Recognition, RecognizeRequest, Region
from .engines import build_layout, build_recognizer
from .errors import ModelError, NotReady, Overloaded, ServeAppError
from .job_runner import JobRunner
from .local import LocalLayout
from .storage import Storage

logger = logging.getLogger("ray.serve.serve_app")

LAYOUT, RECOGNIZER, JOBS, INGRESS = "Layout", "Recognizer", "Jobs", "Ingress"
HEALTH_CACHE_S = 1.0
HEALTH_TIMEOUT_S = 5.0
STREAM_FLUSH_S = 0.05
JOB_LOOP_STOP_S = 10.0


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
    def __init__(self, args: CpuRecognizerArgs | VllmRecognizerArgs) -> None:
        started = time.perf_counter()
        self._engine = build_recognizer(args)
        self._engine.start()
        logger.info("recognizer models loaded in %.1f s", time.perf_counter() - started)

    def check_health(self) -> None:
        self._engine.check_health()

    async def recognize(self, requests: list[RecognizeRequest]) -> list[Recognition]:
        return await self._engine.recognize(requests)

    def check_lang(self, lang: str) -> str:
        return self._engine.check_lang(lang)

    async def chat(self, turns: list[ChatTurn], max_tokens: int, temperature: float) -> ChatReply:
        return await self._engine.chat(turns, max_tokens, temperature)

    async def chat_stream(
        self, turns: list[ChatTurn], max_tokens: int, temperature: float
    ) -> AsyncIterator[ChatReply]:
        """Pieces of at least ``STREAM_FLUSH_S`` each: one Ray object per token would cost more than
        the token; a reader sees no difference at 20 pieces a second."""
        pending: ChatReply | None = None
        flushed = time.monotonic()
        async for piece in self._engine.chat_stream(turns, max_tokens, temperature):
            pending = piece if pending is None else replace(piece, text=pending.text + piece.text)
            if piece.finish_reason is not None or time.monotonic() - flushed >= STREAM_FLUSH_S:
                yield pending
                pending, flushed = None, time.monotonic()
        if pending is not None:
            yield pending

    def info(self) -> dict[str, Any]:
        return asdict(self._engine.info())

    def __del__(self) -> None:
        self._engine.shutdown()


class JobsDeployment:
    """Runs queued jobs (state in S3) over the model deployments; see ``job_runner.JobRunner``."""

    # Serve awaits an async constructor (on the replica's event loop, where the job loop runs).
    async def __init__(  # type: ignore[misc]
        self, layout: DeploymentHandle | None, recognizer: DeploymentHandle, args: AppArgs
    ):
        assert args.storage is not None
        self._runner = JobRunner(args, Storage(args.storage), ServeBackend(layout, recognizer))
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


async def _call(response: Any) -> Any:
    """Await a handle call; Serve's and Ray's failures become our errors (problem+json)."""
    with _our_errors(response):
        return await response


async def _stream(response: Any) -> AsyncGenerator[Any, None]:
    """Iterate a streaming handle call (``DeploymentResponseGenerator``), with ``_call``'s errors."""
    with _our_errors(response):
        async for item in response:
            yield item


@contextmanager
def _our_errors(response: Any) -> Iterator[None]:
    try:
        yield
    except (asyncio.CancelledError, GeneratorExit):
        response.cancel()  # deadline or client gone: stop the downstream work too
        raise
    except BackPressureError as exc:
        raise Overloaded(f"{exc.message} Retry later.", retry_after_s=exc.retry_after_s or 2.0) from None
    except DeploymentUnavailableError as exc:
        raise NotReady(exc.message) from None
    except RayTaskError as exc:
        if isinstance(exc.cause, ServeAppError):
            raise exc.cause from None
        raise ModelError(f"model replica failed: {exc.cause!r}") from exc
    except RayActorError as exc:
        raise Overloaded(f"a model replica died and is being replaced: {exc}") from None


class _LayoutClient:
    def __init__(self, handle: DeploymentHandle) -> None:
        self._handle = handle

    async def detect(self, image: np.ndarray) -> list[Region]:
        return await _call(self._handle.detect.remote(image))


class _RecognizerClient:
    def __init__(self, handle: DeploymentHandle) -> None:
        self._handle = handle

    async def recognize(self, requests: Sequence[RecognizeRequest]) -> list[Recognition]:
        return await _call(self._handle.recognize.remote(list(requests)))


class ServeBackend:
    """Readiness comes from Serve's own deployment status, not from ``/-/healthz``."""

    def __init__(
        self,
        layout: DeploymentHandle | None,
        recognizer: DeploymentHandle,
        jobs: DeploymentHandle | None = None,
    ) -> None:
        self._handles = {RECOGNIZER: recognizer}
        if layout is not None:
            self._handles = {LAYOUT: layout, **self._handles}
        self._jobs = jobs
        # Readiness covers the job runners too; models come from the model deployments only.
        self._watched = [*self._handles, *([JOBS] if jobs is not None else [])]
        self.layout = None if layout is None else _LayoutClient(layout)
        self.recognizer = _RecognizerClient(recognizer)
        self._models: dict[str, Any] = {}
        self._cached: tuple[float, Health] | None = None
        self._lock = asyncio.Lock()

    async def check_lang(self, lang: str) -> str:
        return await _call(self._handles[RECOGNIZER].check_lang.remote(lang))

    async def chat(self, turns: Sequence[ChatTurn], max_tokens: int, temperature: float) -> ChatReply:
        return await _call(self._handles[RECOGNIZER].chat.remote(list(turns), max_tokens, temperature))

    def chat_stream(
        self, turns: Sequence[ChatTurn], max_tokens: int, temperature: float
    ) -> AsyncGenerator[ChatReply, None]:
        handle = self._handles[RECOGNIZER].options(stream=True)
        return _stream(handle.chat_stream.remote(list(turns), max_tokens, temperature))

    def wake_jobs(self) -> None:
        if self._jobs is not None:
            self._jobs.wake.remote()  # not awaited: a hint, the runners also look by themselves

    async def health(self) -> Health:
        async with self._lock:  # one fetch at a time; callers meanwhile share its answer
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > HEALTH_CACHE_S:
                try:
                    health = await asyncio.wait_for(self._fetch_health(), HEALTH_TIMEOUT_S)
                except Exception as exc:  # the ingress still answers: say what is wrong
                    logger.warning("health check failed: %r", exc)
                    health = Health("degraded", f"cannot read Serve's status: {exc!r}")
                self._cached = (time.monotonic(), health)
            return self._cached[1]

    async def _fetch_health(self) -> Health:
        app_name = serve.get_replica_context().app_name
        status = await asyncio.to_thread(serve.status)
        app = status.applications.get(app_name)
        if app is None:
            return Health("starting", f"application {app_name!r} is not known to Serve yet")
        deployments: dict[str, Any] = {}
        waiting: list[str] = []
        broken: list[str] = []
        for name in self._watched:
            d = app.deployments.get(name)
            # Keys are typed ReplicaState but arrive as plain strings over the wire.
            replicas = {str(getattr(k, "value", k)): v for k, v in d.replica_states.items()} if d else {}
            running = replicas.get("RUNNING", 0)
            deployments[name] = {
                "status": str(d.status.value) if d else "UNKNOWN",
                "replicas": replicas,
                "message": d.message if d else "",
            }
            if running == 0:
                failed = d is not None and d.status.value in ("DEPLOY_FAILED", "UNHEALTHY")
                (broken if failed else waiting).append(name)
            elif name in self._handles and name not in self._models:
                self._models[name] = await _call(self._handles[name].info.remote())
        if broken:
            return Health("degraded", f"no healthy replica of {', '.join(broken)}", deployments, self._models)
        if waiting:
            return Health("loading", f"models of {', '.join(waiting)} are loading", deployments, self._models)
        return Health("ready", "", deployments, self._models)


@serve.ingress()
class IngressDeployment:
    def __init__(
        self,
        layout: DeploymentHandle | None,
        recognizer: DeploymentHandle,
        jobs: DeploymentHandle | None,
        args: AppArgs,
    ):
        self._args = args
        self._backend = ServeBackend(layout, recognizer, jobs)

    def __serve_build_asgi_app__(self) -> Any:
        return create_api(self._args, self._backend)
