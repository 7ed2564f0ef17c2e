"""The swap group's rules (engines/swap.py) with engines that record what is done to them; the same
rules with real vLLM engines are in tests/integration/test_vlm_serve.py."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from serve_app.datatypes import Recognition, RecognizeRequest
from serve_app.engines.base import ModelInfo, ModelLoadError, RecognizerEngine
from serve_app.engines.swap import Swapper
from serve_app.errors import NotReady, Overloaded


class Recorded(RecognizerEngine):
    """An engine that logs its starts, sleeps and wakes, and holds a read until told to go."""

    def __init__(self, name: str, log: list[str], in_place: bool = False, wake_s: float = 0.0) -> None:
        self.name, self.log, self.sleeps_in_place, self.wake_s = name, log, in_place, wake_s
        self.loaded = False
        self.fail_wake: Exception | None = None
        self.fail_sleep: Exception | None = None
        self.hold: asyncio.Event | None = None

    def start(self) -> None:
        self.log.append(f"start {self.name}")
        self.loaded = True

    def check_files(self) -> None:
        self.log.append(f"files {self.name}")

    async def sleep(self) -> None:
        if self.fail_sleep is not None:
            raise self.fail_sleep
        self.log.append(f"sleep {self.name}")
        self.loaded = False

    async def wake(self) -> None:
        await asyncio.sleep(self.wake_s)
        if self.fail_wake is not None:
            self.log.append(f"failed {self.name}")
            raise self.fail_wake
        self.log.append(f"wake {self.name}")
        self.loaded = True

    def check_health(self) -> None:
        if not self.loaded:
            raise RuntimeError(f"{self.name} is not loaded")

    def check_lang(self, lang: str) -> str:
        return lang

    async def recognize(self, requests: Sequence[RecognizeRequest]) -> list[Recognition]:
        assert self.loaded, f"{self.name} read while not loaded"
        self.log.append(f"read {self.name}")
        if self.hold is not None:
            await self.hold.wait()
        self.log.append(f"done {self.name}")
        return [Recognition(self.name, 1.0, self.name) for _ in requests]

    def info(self) -> ModelInfo:
        return ModelInfo("recognizer", self.name)


def group(*names: str, wait_s: float = 5.0, **kw) -> tuple[Swapper, dict[str, Recorded], list[str]]:  # type: ignore[no-untyped-def]
    log: list[str] = []
    engines = {n: Recorded(n, log, **kw) for n in names}
    return Swapper(engines, wait_s), engines, log


async def read(swapper: Swapper, name: str | None) -> str:
    async with swapper.use(name) as engine:
        return (await engine.recognize([None]))[0].text  # type: ignore[list-item]


async def test_a_reloading_group_starts_only_its_default_and_swaps_on_demand() -> None:
    swapper, _, log = group("a", "b")
    await swapper.start()
    assert log == ["files b", "start a"]  # a missing model is found at start, not at its first request
    assert [await read(swapper, m) for m in ("b", "a", None, "b")] == ["b", "a", "a", "b"]
    assert swapper.swaps == 3 and swapper.last_swap_s is not None
    assert log[2:] == ["sleep a", "wake b", "read b", "done b", "sleep b", "wake a", "read a", "done a",
                       "read a", "done a", "sleep a", "wake b", "read b", "done b"]  # fmt: skip
    assert swapper.states()["models"] == {"a": {"state": "not loaded"}, "b": {"state": "loaded"}}
    swapper.check_health()


async def test_models_that_sleep_in_place_are_started_then_put_to_sleep() -> None:
    swapper, _, log = group("a", "b", "c", in_place=True)
    await swapper.start()
    assert log == ["start b", "sleep b", "start c", "sleep c", "start a"]
    assert swapper.states()["models"]["b"] == {"state": "sleeping"}


async def test_the_outgoing_models_reads_drain_before_it_sleeps_and_newcomers_queue_behind() -> None:
    swapper, engines, log = group("a", "b")
    await swapper.start()
    engines["a"].hold = asyncio.Event()
    first_a = asyncio.create_task(read(swapper, "a"))
    await asyncio.sleep(0.01)
    want_b = asyncio.create_task(read(swapper, "b"))
    await asyncio.sleep(0.01)
    late_a = asyncio.create_task(read(swapper, "a"))  # must not starve b by keeping a busy
    await asyncio.sleep(0.01)
    assert log[-1] == "read a" and not want_b.done()
    engines["a"].hold.set()
    assert await asyncio.gather(first_a, want_b, late_a) == ["a", "b", "a"]
    assert log[2:] == ["read a", "done a", "sleep a", "wake b", "read b", "done b", "sleep b", "wake a",
                       "read a", "done a"]  # fmt: skip


async def test_a_wait_past_its_bound_is_a_503_and_the_swap_still_completes() -> None:
    swapper, _, log = group("a", "b", wait_s=0.05, wake_s=0.3)
    await swapper.start()
    with pytest.raises(Overloaded) as refused:
        await read(swapper, "b")
    assert refused.value.status == 503 and refused.value.retry_after_s
    await asyncio.sleep(0.4)  # the swap its request started ran on without it
    assert log[-1] == "wake b" and swapper.states()["models"]["b"]["state"] == "loaded"


async def test_a_model_that_fails_to_wake_leaves_the_one_before_serving() -> None:
    swapper, engines, log = group("a", "b")
    await swapper.start()
    engines["b"].fail_wake = ModelLoadError("VLM model folder not found at /models/b")
    with pytest.raises(NotReady, match=r"could not be loaded.*folder not found"):
        await read(swapper, "b")
    assert log[2:] == ["sleep a", "failed b", "wake a"]
    states = swapper.states()["models"]
    assert states["a"] == {"state": "loaded"} and "folder not found" in states["b"]["error"]
    swapper.check_health()
    assert await read(swapper, "a") == "a" and swapper.swaps == 0
    engines["b"].fail_wake = None  # fixed: the next request for it swaps it in, the error goes
    assert await read(swapper, "b") == "b" and "error" not in swapper.states()["models"]["b"]


async def test_when_neither_model_wakes_the_replica_reports_unhealthy() -> None:
    swapper, engines, _ = group("a", "b")
    await swapper.start()
    engines["b"].fail_wake = engines["a"].fail_wake = RuntimeError("card lost")
    with pytest.raises(NotReady):
        await read(swapper, "b")
    with pytest.raises(RuntimeError, match="no model is awake"):
        swapper.check_health()


async def test_a_failure_refuses_only_the_requests_that_waited_for_it() -> None:
    swapper, engines, log = group("a", "b")
    await swapper.start()
    engines["b"].fail_wake = RuntimeError("out of memory")
    with pytest.raises(NotReady):
        await read(swapper, "b")
    engines["b"].fail_wake = None
    assert await read(swapper, "b") == "b"  # a later request tries again
    assert log[-4:] == ["sleep a", "wake b", "read b", "done b"]


@pytest.mark.parametrize("newcomer", ["a", "c"])
async def test_the_next_swap_is_for_the_longest_waiter_never_the_awake_model(newcomer: str) -> None:
    """A request arriving as the awake model's last read ends neither swaps that model out and in
    again nor goes ahead of the model waited for longest."""
    swapper, engines, log = group("a", "b", "c")
    await swapper.start()
    held = engines["a"].hold = asyncio.Event()
    first = asyncio.create_task(read(swapper, "a"))
    await asyncio.sleep(0.01)
    waiting = asyncio.create_task(read(swapper, "b"))
    await asyncio.sleep(0.01)
    engines["a"].hold = None
    held.set()
    late = asyncio.create_task(read(swapper, newcomer))  # in the same turn as a's read ends
    assert await asyncio.gather(first, waiting, late) == ["a", "b", newcomer]
    swaps = [entry for entry in log[3:] if entry.startswith(("sleep", "wake"))]
    assert swaps == ["sleep a", "wake b", "sleep b", f"wake {newcomer}"]


async def test_a_model_that_will_not_let_go_fails_the_swap_once_and_the_health() -> None:
    swapper, engines, _ = group("a", "b")
    await swapper.start()
    engines["a"].fail_sleep = RuntimeError("sleep failed")
    with pytest.raises(NotReady, match="'a' would not let go"):
        await read(swapper, "b")
    assert swapper._epoch == 1  # one attempt, not one per wake-up of the waiter
    with pytest.raises(RuntimeError, match="no model is awake"):
        swapper.check_health()  # the replica is replaced


async def test_a_request_cancelled_twice_still_leaves_and_one_that_gives_up_lets_others_in() -> None:
    swapper, engines, _ = group("a", "b", wait_s=5.0)
    await swapper.start()
    engines["a"].hold = asyncio.Event()
    reading = asyncio.create_task(read(swapper, "a"))
    await asyncio.sleep(0.01)
    await swapper._changed.acquire()  # its way out waits for the lock ...
    reading.cancel()
    await asyncio.sleep(0.01)
    reading.cancel()  # ... and is cancelled again there
    await asyncio.sleep(0.01)
    swapper._changed.release()
    await asyncio.sleep(0.01)
    assert reading.cancelled() and swapper._in_flight == 0
    # b waits for a's read; a request for a waits behind b; b gives up: a is let in at once.
    engines["a"].hold = asyncio.Event()
    reading = asyncio.create_task(read(swapper, "a"))
    await asyncio.sleep(0.01)
    waiting = asyncio.create_task(read(swapper, "b"))
    await asyncio.sleep(0.01)
    behind = asyncio.create_task(read(swapper, "a"))
    await asyncio.sleep(0.01)
    waiting.cancel()
    await asyncio.sleep(0.01)
    assert swapper._in_flight == 2  # both reads of a, without waiting out swap_wait_s
    engines["a"].hold.set()
    assert await asyncio.gather(reading, behind) == ["a", "a"]
