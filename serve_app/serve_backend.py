"""What the HTTP API and the job runners hold of the model deployments: a client for each over
its DeploymentHandle, chat, the job runners' wake-up, and readiness read from Serve's own status.
Serve's and Ray's failures become our errors here (problem+json), and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from .backend import FAILED, Engines, Health, Status
from .config import RECOGNIZER_DEPLOYMENT
from .datatypes import ChatReply, ChatTurn, Recognition, RecognizeRequest, Region
from .errors import ModelError, NotReady, Overloaded, ServeAppError

logger = logging.getLogger("ray.serve.serve_app")

LAYOUT, RECOGNIZER, JOBS, INGRESS = "Layout", RECOGNIZER_DEPLOYMENT, "Jobs", "Ingress"
HEALTH_CACHE_S = 1.0
HEALTH_TIMEOUT_S = 5.0


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
    def __init__(self, handle: DeploymentHandle, model: str) -> None:
        self._handle, self._model = handle, model

    async def recognize(self, requests: Sequence[RecognizeRequest]) -> list[Recognition]:
        return await _call(self._handle.recognize.remote(list(requests), self._model))


class ServeBackend:
    """Readiness comes from Serve's own deployment status, not from ``/-/healthz``.
    ``recognizers``: each recognizer deployment's handle by its name; ``placement``: the deployment
    of each recognizer model by the model's name, the default first (a swap group's models share
    one)."""

    def __init__(
        self,
        layout: DeploymentHandle | None,
        recognizers: Mapping[str, DeploymentHandle],
        placement: Mapping[str, str],
        jobs: DeploymentHandle | None = None,
    ) -> None:
        self._handles = {**({LAYOUT: layout} if layout is not None else {}), **recognizers}
        self._placement = dict(placement)
        self._jobs = jobs
        # Readiness covers the job runners too; models come from the model deployments only.
        self._watched = [*self._handles, *([JOBS] if jobs is not None else [])]
        self.layout = None if layout is None else _LayoutClient(layout)
        self._selected = {
            model: _Selected(self, model, deployment, _RecognizerClient(recognizers[deployment], model))
            for model, deployment in self._placement.items()
        }
        self.recognizer = next(iter(self._selected.values())).recognizer
        self._models: dict[str, Any] = {}  # the layout's info, and each recognizer model's
        self._cached: tuple[float, Health] | None = None
        self._lock = asyncio.Lock()

    def select(self, model: str) -> Engines:
        return self._selected[model]

    def _handle(self, model: str | None) -> tuple[DeploymentHandle, str]:
        model = model or next(iter(self._placement))
        return self._handles[self._placement[model]], model

    async def check_lang(self, lang: str, model: str | None = None) -> str:
        handle, model = self._handle(model)
        return await _call(handle.check_lang.remote(lang, model))

    async def chat(
        self, turns: Sequence[ChatTurn], max_tokens: int, temperature: float, model: str | None = None
    ) -> ChatReply:
        handle, model = self._handle(model)
        return await _call(handle.chat.remote(list(turns), max_tokens, temperature, model))

    def chat_stream(
        self, turns: Sequence[ChatTurn], max_tokens: int, temperature: float, model: str | None = None
    ) -> AsyncGenerator[ChatReply, None]:
        handle, model = self._handle(model)
        streamed = handle.options(stream=True)
        return _stream(streamed.chat_stream.remote(list(turns), max_tokens, temperature, model))

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
        if not app.deployments and self._cached is not None and self._cached[1].deployments:
            # Serve lists no deployment while it builds a new version of the app (`serve deploy`
            # of a changed config); the running version's replicas still serve these handles.
            return self._cached[1]
        deployments: dict[str, Any] = {}
        for name in self._watched:
            d = app.deployments.get(name)
            # Keys are typed ReplicaState but arrive as plain strings over the wire.
            replicas = {str(getattr(k, "value", k)): v for k, v in d.replica_states.items()} if d else {}
            deployments[name] = {
                "status": str(d.status.value) if d else "UNKNOWN",
                "replicas": replicas,
                "message": d.message if d else "",
            }
            if replicas.get("RUNNING", 0) and name == LAYOUT and name not in self._models:
                self._models[name] = await _call(self._handles[name].info.remote())
        recognizers: dict[str, Any] = {}
        for deployment in dict.fromkeys(self._placement.values()):
            if not deployments[deployment]["replicas"].get("RUNNING", 0):
                continue
            held = [m for m, d in self._placement.items() if d == deployment]
            for model in held:
                if model not in self._models:
                    self._models[model] = await _call(self._handles[deployment].info.remote(model))
                recognizers[model] = {"deployment": deployment, **self._models[model]}
            if len(held) > 1:  # a swap group: which model is awake changes (one replica's view)
                states = await _call(self._handles[deployment].states.remote())
                for model in held:
                    recognizers[model].update(
                        states["models"][model], swaps=states["swaps"], last_swap_s=states["last_swap_s"]
                    )
        models = {
            **({LAYOUT: self._models[LAYOUT]} if LAYOUT in self._models else {}),
            **{d: recognizers[m] for m, d in reversed(self._placement.items()) if m in recognizers},
        }  # a deployment's default model: its first (reversed: the first one set wins)
        return Health(*_readiness(deployments, self._watched), deployments, models, recognizers)


def _readiness(deployments: dict[str, Any], names: Sequence[str]) -> tuple[Status, str]:
    """Ready when each of ``names`` has a running replica: the one place readiness is decided."""
    waiting: list[str] = []
    broken: list[str] = []
    for name in names:
        d = deployments.get(name, {})
        if d.get("replicas", {}).get("RUNNING", 0) == 0:
            (broken if d.get("status") in FAILED else waiting).append(name)
    if broken:
        return "degraded", f"no healthy replica of {', '.join(broken)}"
    if waiting:
        return "loading", f"models of {', '.join(waiting)} are loading"
    return "ready", ""


@dataclass(frozen=True)
class _Selected:
    """The engines as one recognizer model reads with them: its model (with the layout's) is
    what a result is keyed by."""

    backend: ServeBackend
    model: str
    deployment: str
    recognizer: _RecognizerClient

    @property
    def layout(self) -> _LayoutClient | None:
        return self.backend.layout

    async def health(self) -> Health:
        """Ready when this recognizer and the layout are: a document read with them needs no other
        deployment (a job runner or another recognizer being replaced holds no page back)."""
        h = await self.backend.health()
        needed = [name for name in (LAYOUT, self.deployment) if name in h.deployments]
        status, reason = _readiness(h.deployments, needed) if needed else (h.status, h.reason)
        models = {k: v for k, v in h.models.items() if k == LAYOUT}
        if self.model in h.recognizers:
            models[self.deployment] = {
                k: v for k, v in h.recognizers[self.model].items() if k in ("role", "name", "detail")
            }
        return replace(h, status=status, reason=reason, models=models)

    async def check_lang(self, lang: str) -> str:
        return await self.backend.check_lang(lang, self.model)

    def select(self, model: str) -> Engines:
        return self.backend.select(model)
