"""Serve's and Ray's failures become our errors at the handle boundary (no Serve started)."""

from __future__ import annotations

import asyncio

import pytest
from ray.serve.exceptions import BackPressureError

from serve_app.errors import ModelError, Overloaded, UnprocessableDocument
from serve_app.serve_backend import _call


class FakeResponse:
    """Stands in for a DeploymentResponse: awaitable, cancellable."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.cancelled = False

    def __await__(self):
        if False:
            yield
        raise self.exc

    def cancel(self) -> None:
        self.cancelled = True


def test_backpressure_becomes_503_with_retry_after() -> None:
    with pytest.raises(Overloaded) as info:
        asyncio.run(_call(FakeResponse(BackPressureError(10, 10, 503, 4.0))))
    assert info.value.status == 503 and info.value.retry_after_s == 4.0


def test_ray_task_errors_unwrap_to_our_error_or_a_model_error() -> None:
    from ray.exceptions import RayTaskError

    ours = RayTaskError("detect", "tb", UnprocessableDocument("bad crop"))
    with pytest.raises(UnprocessableDocument, match="bad crop"):
        asyncio.run(_call(FakeResponse(ours)))
    theirs = RayTaskError("detect", "tb", ValueError("boom"))
    with pytest.raises(ModelError):
        asyncio.run(_call(FakeResponse(theirs)))


def test_cancellation_cancels_the_downstream_call() -> None:
    response = FakeResponse(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(_call(response))
    assert response.cancelled
