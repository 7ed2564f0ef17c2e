"""Recognizers that share one replica, one of them awake at a time: a model named by a request is
swapped in on demand.

Models whose GPU budgets do not fit the card together (or that are marked ``swappable``) are one
group, held by one replica. A request names its model; ``use`` admits it while that model is awake
and no other model is waited for. A request for a sleeping model waits (at most ``wait_s``, then
503 + Retry-After) until the awake model's requests have drained; then one swap runs to its end,
whoever asked for it has gone: the awake model lets go of its memory (``RecognizerEngine.sleep``:
vLLM's sleep mode on a GPU, a shut-down engine elsewhere) and the asked one takes it
(``wake``). A model that fails to wake leaves the one before it serving, and the failure is in its
``states`` (and /health) until it wakes.

A group of one never swaps: every recognizer replica reads through a ``Swapper``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import NotReady, Overloaded
from .base import RecognizerEngine

logger = logging.getLogger("ray.serve.serve_app.swap")

RETRY_AFTER_S = 10.0


@dataclass(eq=False)
class _Waiter:
    model: str
    epoch: int  # the swaps ended before it came


class Swapper:
    def __init__(self, engines: Mapping[str, RecognizerEngine], wait_s: float | Mapping[str, float]) -> None:
        self.engines = dict(engines)
        self.default = next(iter(self.engines))
        # How long a request for each model waits for it to be swapped in.
        self._wait_s = dict(wait_s) if isinstance(wait_s, Mapping) else dict.fromkeys(self.engines, wait_s)
        self._awake: str | None = None
        self._swapping: str | None = None  # the model being swapped in
        self._in_flight = 0
        self._waiters: list[_Waiter] = []
        self._epoch = 0  # swaps ended, successful or not
        self._errors: dict[str, str] = {}  # each model's last failure to wake
        self._failed: dict[str, int] = {}  # the epoch of the swap that failed it
        self._changed = asyncio.Condition()
        self.swaps = 0
        self.last_swap_s: float | None = None
        self._task: asyncio.Task[None] | None = None  # the swap running (held: the loop only weakly does)

    async def start(self) -> None:
        """The default model is started, and awake. The others are started and put to sleep
        first where they sleep in place (vLLM's sleep mode), one after another (each sizes its
        memory from what is free); elsewhere only their files are checked: a missing model is a
        start-up error either way."""
        for name, engine in self.engines.items():
            if name == self.default:
                continue
            if engine.sleeps_in_place:
                await asyncio.to_thread(engine.start)
                await engine.sleep()
            else:
                engine.check_files()
        await asyncio.to_thread(self.engines[self.default].start)
        self._awake = self.default

    def check_health(self) -> None:
        """The awake model's health; during a swap (bounded by the engines' start timeouts) the
        replica is healthy. None awake otherwise: a model before that would not let go or wake
        again; then the replica is replaced."""
        if self._swapping is not None:
            return
        if self._awake is None:
            raise RuntimeError(f"no model is awake: {self._errors}")
        self.engines[self._awake].check_health()

    def engine(self, name: str | None) -> RecognizerEngine:
        return self.engines[name or self.default]

    @asynccontextmanager
    async def use(self, name: str | None) -> AsyncIterator[RecognizerEngine]:
        """The engine of ``name``, awake for as long as the block runs."""
        name = name or self.default
        engine = self.engines[name]
        await self._admit(name)
        try:
            yield engine
        finally:
            self._in_flight -= 1  # at once: a second cancellation cannot skip it
            await asyncio.shield(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _admit(self, name: str) -> None:
        deadline = time.monotonic() + self._wait_s[name]
        me = _Waiter(name, self._epoch)
        admitted = False
        async with self._changed:
            self._waiters.append(me)
            try:
                while not self._admits(me):
                    if self._swapping is None and self._in_flight == 0 and not self._owed():
                        # The model the longest waiter asked for (never the awake one).
                        target = next((w.model for w in self._waiters if w.model != self._awake), None)
                        if target is not None:
                            self._swapping = target
                            # Its own task: a swap runs to its end even if this request goes away.
                            self._task = asyncio.get_running_loop().create_task(self._swap(target))
                            self._task.add_done_callback(_log_crash)
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise Overloaded(
                            f"model {name!r} is being swapped in; retry later",
                            retry_after_s=RETRY_AFTER_S,
                        )
                    try:
                        await asyncio.wait_for(self._changed.wait(), left)
                    except TimeoutError:
                        continue
                    if self._failed.get(name, -1) >= me.epoch:  # a swap for it failed while it waited
                        raise NotReady(f"model {name!r} could not be loaded: {self._errors[name]}")
                self._in_flight += 1
                admitted = True
            finally:
                self._waiters.remove(me)
                if not admitted:  # who waited behind it (or for its turn) may go now
                    self._changed.notify_all()

    def _admits(self, me: _Waiter) -> bool:
        """Awake and not on its way out; and either nobody waits for another model, or this
        request waited through a swap (it is let in before the swap back it would otherwise lose)."""
        if self._awake != me.model or self._swapping is not None:
            return False
        return me.epoch < self._epoch or not any(w.model != me.model for w in self._waiters)

    def _owed(self) -> bool:
        """Requests for the awake model that waited through the last swap and are not in yet."""
        return any(w.model == self._awake and w.epoch < self._epoch for w in self._waiters)

    async def _swap(self, name: str) -> None:
        started = time.perf_counter()
        before = self._awake
        try:
            if before is not None:
                try:
                    await self.engines[before].sleep()
                except Exception as exc:  # half let go: nothing is awake; health says so
                    logger.error("model %s failed to let go for %s: %r", before, name, exc)
                    self._awake = None
                    self._errors[before] = repr(exc)
                    self._errors[name] = f"model {before!r} would not let go of its memory: {exc!r}"
                    self._failed[name] = self._epoch
                    return
            self._awake = None
            try:
                await self.engines[name].wake()
            except Exception as exc:  # the one before serves on; the failure is reported
                logger.error("model %s failed to wake: %r", name, exc)
                self._errors[name], self._failed[name] = repr(exc), self._epoch
                if before is not None:
                    await self.engines[before].wake()
                    self._awake = before
                return
            self._awake = name
            self._errors.pop(name, None)
            self.swaps += 1
            self.last_swap_s = time.perf_counter() - started
            logger.info("swapped %s for %s in %.1f s", name, before, self.last_swap_s)
        except Exception as exc:  # the model before did not wake either: the next request tries
            logger.error("swap from %s to %s failed: %r", before, name, exc)
            self._errors[before or name] = repr(exc)
        finally:
            async with self._changed:
                self._swapping = None
                self._epoch += 1
                self._changed.notify_all()

    def states(self) -> dict[str, Any]:
        """Each model's state (``loaded``, ``sleeping``, ``not loaded``), its last load error, and
        the swaps this replica has made."""
        models = {}
        for name, engine in self.engines.items():
            asleep = "sleeping" if engine.sleeps_in_place else "not loaded"
            state = "loaded" if name == self._awake else asleep
            models[name] = {"state": state, **({"error": self._errors[name]} if name in self._errors else {})}
        return {"models": models, "swaps": self.swaps, "last_swap_s": self.last_swap_s}


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("swap task crashed: %r", task.exception())
