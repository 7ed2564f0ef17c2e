"""The vLLM recognizer: a VLM engine hosted in-process (``AsyncLLM``) reading region crops or pages.

vLLM is imported only in ``start``, so this module imports on any machine. The model's prompts and
output parsing live in a profile (``profiles.py``); this module owns the engine, sampling, the
repetition guard and retries. Pictures are not read unless configured (``read_figures``).

An answer is accepted only if generation stopped by itself and did not loop; otherwise it is retried
up the temperature ladder and, failing that, returned with an ``error`` flag and the text cut before
the loop (a flagged block, never a failed document).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import VllmRecognizerArgs
from ..datatypes import ChatReply, ChatTurn, ReadBlock, Recognition, RecognizeRequest
from .base import ModelInfo, ModelLoadError, RecognizerEngine, one_start_at_a_time
from .profiles import PROFILES, Profile, scale_box

logger = logging.getLogger("ray.serve.serve_app.vlm")

CHECK_EVERY_TOKENS = 32  # run the repetition guard this often while a region streams


def find_loop(text: str, min_chars: int, max_unit: int) -> int | None:
    """Where a looping tail starts: the tail of ``text`` is one unit (1..max_unit characters)
    repeated over at least ``min_chars``. Returns the index just after the first copy of the unit
    that starts the loop, so ``text[:index]`` keeps one copy; None when the tail does not loop."""
    n = len(text)
    if n < min_chars:
        return None
    for unit in range(1, max_unit + 1):
        if n < 2 * unit:
            break
        pattern = text[n - unit :]
        start = n - unit
        while start >= unit and text[start - unit : start] == pattern:
            start -= unit
        if n - start >= max(min_chars, 3 * unit):
            return start + unit
    return None


def vllm_environment(args: VllmRecognizerArgs) -> dict[str, str]:
    """What vLLM reads from the environment, as these settings want it (a variable already set
    wins). Offline clusters are the norm: never reach for a hub at start or request time. The
    engine's start is bounded by ``start_timeout_s``: vLLM's own wait for its engine core process
    (weights, profiling, KV cache), which fails the start with a TimeoutError past it, as Ray
    Serve LLM bounds its engine start."""
    return {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_ENGINE_READY_TIMEOUT_S": str(math.ceil(args.start_timeout_s)),
    }


def check_chat_template(model: Path, profile: Profile, trust_remote_code: bool) -> None:
    """The profile's prompts against what the model folder's own chat template renders for the
    same turns. An OCR prompt that differs (a double BOS, another end of turn, a missing newline)
    reads worse with no error anywhere, so an ``exact_template`` profile refuses to start on it; a
    differing chat (system and assistant turns) is logged."""
    try:
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(
            str(model), local_files_only=True, trust_remote_code=trust_remote_code
        )
    except Exception as exc:  # no processor in the folder, or code it cannot run: vLLM says more
        logger.warning("chat template of %s not checked: its processor does not load: %s", model, exc)
        return
    if not getattr(processor, "chat_template", None):
        logger.warning("chat template of %s not checked: the folder has none", model)
        return
    image = np.zeros((28, 28, 3), np.uint8)
    ocr = [ChatTurn("user", profile.instruction("text", whole_page=False), image)]
    chat = [
        ChatTurn("system", "Be brief."),
        *ocr,
        ChatTurn("assistant", "A page."),
        ChatTurn("user", "Read it."),
    ]
    checks = (
        (ocr, profile.prompt("text", whole_page=False), profile.exact_template),
        (chat, profile.chat_prompt(chat), False),
    )
    for turns, ours, exact in checks:
        theirs = processor.apply_chat_template(_messages(turns), add_generation_prompt=True, tokenize=False)
        if theirs == ours:
            continue
        what = f"profile {profile.name!r} renders {ours!r}, the chat template of {model} renders {theirs!r}"
        if exact:
            raise ModelLoadError(
                f"prompt drift: {what}; fix the profile or the folder (check_chat_template: false skips this)"
            )
        logger.warning("chat template differs from the profile: %s", what)


def _messages(turns: Sequence[ChatTurn]) -> list[dict[str, Any]]:
    return [
        {
            "role": t.role,
            "content": [
                *([{"type": "image"}] if t.image is not None else []),
                {"type": "text", "text": t.text},
            ],
        }
        for t in turns
    ]


class VllmRecognizer(RecognizerEngine):
    def __init__(self, args: VllmRecognizerArgs) -> None:
        self._args = args
        self._profile = PROFILES[args.profile](args.prompts, args.max_pixels)
        self._engine: Any = None
        self.model_name = args.served_model_name or args.model.name

    @property
    def sleeps_in_place(self) -> bool:  # type: ignore[override]
        return self._args.sleeps_in_place

    def check_files(self) -> None:
        model = self._args.model
        if not (model / "config.json").is_file():
            raise ModelLoadError(f"VLM model folder not found at {model} (no download is attempted)")

    def start(self) -> None:
        model = self._args.model
        self.check_files()
        for name, value in vllm_environment(self._args).items():  # before vLLM is imported
            os.environ.setdefault(name, value)
        if self._args.check_chat_template:
            check_chat_template(model, self._profile, self._args.trust_remote_code)
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        a = self._args
        extra: dict[str, Any] = {}
        if a.gpu_memory_utilization is not None:
            extra["gpu_memory_utilization"] = a.gpu_memory_utilization
        if a.kv_cache_memory_bytes is not None:
            extra["kv_cache_memory_bytes"] = a.kv_cache_memory_bytes
        engine_args = AsyncEngineArgs(
            model=str(model),
            served_model_name=self.model_name,
            dtype=a.dtype,
            max_model_len=a.max_model_len,
            max_num_seqs=a.max_num_seqs,
            max_num_batched_tokens=a.max_num_batched_tokens,
            enforce_eager=a.enforce_eager,
            trust_remote_code=a.trust_remote_code,
            limit_mm_per_prompt={"image": 1},
            # OCR prompts share nothing worth caching, and every crop is a new image.
            enable_prefix_caching=False,
            mm_processor_cache_gb=0,
            seed=a.seed,
            load_format=a.load_format,
            disable_log_stats=True,
            enable_sleep_mode=a.sleeps_in_place,
            logits_processors=list(self._profile.logits_processors) or None,
            **extra,
        )
        try:
            with one_start_at_a_time():
                self._engine = AsyncLLM.from_engine_args(engine_args)
        except Exception as exc:
            raise ModelLoadError(f"vLLM could not start the model at {model}: {exc}") from exc

    def check_health(self) -> None:
        if self._engine is None:
            raise RuntimeError("VLM engine is not started")
        if self._engine.errored:
            raise RuntimeError(f"VLM engine died: {self._engine.dead_error!r}")

    def check_lang(self, lang: str) -> str:
        return (lang or "auto").strip().lower() or "auto"  # the VLM reads every script it knows

    async def recognize(self, requests: Sequence[RecognizeRequest]) -> list[Recognition]:
        return list(await asyncio.gather(*(self._recognize(r) for r in requests)))

    async def _recognize(self, req: RecognizeRequest) -> Recognition:
        from PIL import Image

        self.check_health()
        engine = f"vllm:{self.model_name}"
        if req.task == "figure" and not self._args.read_figures:
            return Recognition("", 1.0, "skipped")
        image = Image.fromarray(np.ascontiguousarray(req.image))
        if req.whole_page and self._profile.layout_size:
            return await self._read_in_two_steps(req, image)
        width, height = image.size
        size = self._profile.image_size(width, height)
        if size != (width, height):
            image = image.resize(size, Image.Resampling.BICUBIC)
        prompt = {
            "prompt": self._profile.prompt(req.task, req.whole_page),
            "multi_modal_data": {"image": image},
        }
        text, error, tokens = await self._generate_with_retries(
            prompt, "page" if req.whole_page else req.task
        )
        reading = self._profile.parse(req.task, text, req.whole_page)
        space = (self._profile.box_scale,) * 2 if self._profile.box_scale else size
        sx, sy = width / space[0], height / space[1]
        blocks = tuple(
            ReadBlock(scale_box(b.bbox, sx, sy, width, height), b.label, b.text) for b in reading.blocks
        )
        error = error or reading.error
        return Recognition(reading.text, 1.0 if error is None else 0.0, engine, error, blocks, tokens)

    async def _read_in_two_steps(self, req: RecognizeRequest, page: Any) -> Recognition:
        """A page read by a profile that lays it out itself first (MinerU2.5): the layout request,
        then every block's crop read as a region of its kind, all at once."""
        from PIL import Image

        layout_size = self._profile.layout_size
        assert layout_size is not None
        prompt = {
            "prompt": self._profile.prompt("text", whole_page=True),
            "multi_modal_data": {"image": page.resize(layout_size, Image.Resampling.BICUBIC)},
        }
        text, error, tokens = await self._generate_with_retries(prompt, "page")
        blocks = self._profile.layout(text)
        crops = [
            RecognizeRequest(np.asarray(self._profile.block_image(page, b)), b.task, req.lang)
            for b in blocks
            if b.task is not None
        ]
        read = iter(await self.recognize(crops))
        width, height = page.size
        out = []
        for b in blocks:
            reading = next(read) if b.task is not None else Recognition("", 1.0, "")
            error = error or reading.error
            tokens += reading.tokens
            x0, y0, x1, y1 = b.bbox
            out.append(ReadBlock((x0 * width, y0 * height, x1 * width, y1 * height), b.label, reading.text))
        joined = "\n\n".join(b.text for b in out if b.text)
        return Recognition(
            joined, 1.0 if error is None else 0.0, f"vllm:{self.model_name}", error, tuple(out), tokens
        )

    async def _generate_with_retries(self, prompt: dict[str, Any], task: str) -> tuple[str, str | None, int]:
        """A generation, tried again up the temperature ladder while it loops or is cut off: the
        last (text, why not accepted) and the tokens of all tries."""
        sampling = self._args.sampling
        text, error, tokens = "", None, 0
        for temperature in [sampling.temperature, *sampling.retry_temperatures]:
            text, error, written = await self._generate(prompt, task, temperature)
            tokens += written
            if error is None:
                break
        return text, error, tokens

    async def _generate(
        self, prompt: dict[str, Any], task: str, temperature: float
    ) -> tuple[str, str | None, int]:
        """One generation with the repetition guard: (text, None) if accepted, else (text, why);
        and the tokens it wrote."""
        from vllm import SamplingParams

        s = self._args.sampling
        params = SamplingParams(
            temperature=temperature,
            max_tokens=s.max_tokens.get(task, s.max_tokens["text"]),
            seed=self._args.seed,
            repetition_penalty=s.repetition_penalty,
            **self._profile.sampling_args(task),
        )
        text, finish, checked, written = "", None, 0, 0
        request_id = uuid.uuid4().hex
        # Leaving the loop early closes the generator, and vLLM aborts the request; so does our
        # own cancellation (deadline, client gone).
        async for out in self._engine.generate(prompt, params, request_id):
            completion = out.outputs[0]
            text, finish, written = completion.text, completion.finish_reason, len(completion.token_ids)
            if len(completion.token_ids) - checked >= CHECK_EVERY_TOKENS or finish is not None:
                checked = len(completion.token_ids)
                cut = find_loop(text, s.repeat_min_chars, s.repeat_max_unit)
                if cut is not None:
                    return text[:cut], "repetition", written
        if finish != "stop":
            return text, f"generation stopped: {finish}", written
        return text, None, written

    async def chat_stream(
        self, turns: Sequence[ChatTurn], max_tokens: int, temperature: float
    ) -> AsyncIterator[ChatReply]:
        from PIL import Image
        from vllm import SamplingParams

        self.check_health()
        prompt: dict[str, Any] = {"prompt": self._profile.chat_prompt(turns)}
        images = [Image.fromarray(np.ascontiguousarray(t.image)) for t in turns if t.image is not None]
        if images:
            prompt["multi_modal_data"] = {"image": images[0]}
        params = SamplingParams(
            temperature=temperature,
            max_tokens=max_tokens,
            seed=self._args.seed,
            repetition_penalty=self._args.sampling.repetition_penalty,
            **self._profile.sampling_args("text"),
        )
        sent = 0
        # Closing this generator early (client gone) closes vLLM's, which aborts the request.
        async for out in self._engine.generate(prompt, params, uuid.uuid4().hex):
            completion = out.outputs[0]
            if len(completion.text) > sent or completion.finish_reason is not None:
                yield ChatReply(
                    completion.text[sent:],
                    completion.finish_reason,
                    len(out.prompt_token_ids or []),
                    len(completion.token_ids),
                )
                sent = len(completion.text)

    async def sleep(self) -> None:
        """Sleep mode level 1: the weights to host memory, the KV cache freed (vLLM's own
        ``sleep``); otherwise the engine is shut down."""
        if self.sleeps_in_place:
            await self._engine.sleep(level=1)
        else:
            # vLLM's output handler (a task on this loop) goes first: it would see its engine core
            # gone and log that as a crash. The rest (the core's exit, seconds) off the loop.
            if (handler := self._engine.output_handler) is not None:
                handler.cancel()
            await asyncio.to_thread(self.shutdown)

    async def wake(self) -> None:
        if self.sleeps_in_place:
            await self._engine.wake_up()
        else:
            await super().wake()

    def info(self) -> ModelInfo:
        a = self._args
        return ModelInfo(
            "recognizer",
            f"vllm:{self.model_name}",
            {"profile": a.profile, "path": str(a.model), "max_model_len": a.max_model_len,
             "max_num_seqs": a.max_num_seqs},
        )  # fmt: skip

    def shutdown(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None
