"""Build a randomly initialised PaddleOCR-VL (config, tokenizer, processor) in a folder.

``tiny``: real architecture, real processor, real chat template, ~300k parameters with their
weights saved: vLLM loads it on CPU and answers in milliseconds, so CI runs the production vLLM
code path without a download. Its text is noise; tests assert structure, token counts and control
flow, never content.

``real``: the published PaddleOCR-VL-0.9B's dimensions (transformers' ``PaddleOCRVLConfig``
defaults are that model's: a 27-layer 1152-wide vision encoder, the 18-layer ERNIE-4.5-0.3B text
model, a 103,424-token vocabulary; the processor's pixel bounds of its preprocessor_config.json)
and a tokenizer of the same size, but no weight file: vLLM starts it with ``load_format: dummy``
(random weights), so a GPU box measures the real model's memory and compute per token and image
before, or without, downloading it (the GPU kit, bench/gpu_check.py).

    python -m bench.random_vlm DIR [--size tiny|real]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

SPECIAL = {
    "pad": "<pad>",
    "bos": "<|begin_of_sentence|>",
    "eos": "</s>",
    "unk": "<unk>",
    "image": "<|IMAGE_PLACEHOLDER|>",
    "vision_start": "<|IMAGE_START|>",
    "vision_end": "<|IMAGE_END|>",
    "video": "<|VIDEO_PLACEHOLDER|>",
}
# PaddleOCR-VL's own template as its processor renders it (the PaddlePaddle/PaddleOCR-VL folder's
# chat_template.jinja): "<|begin_of_sentence|>", a system turn's text and a newline, "User: " with
# the image before the text and a newline, "Assistant:\n" opening an answer, and a past answer
# ended by the tokenizer's eos token. The service's profile must render the same (vlm.py checks it).
CHAT_TEMPLATE = (
    "{{- '<|begin_of_sentence|>' -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- for part in message['content'] -%}{%- if part['type'] == 'text' -%}{{ part['text'] + '\n' }}"
    "{%- endif -%}{%- endfor -%}"
    "{%- elif message['role'] == 'user' -%}{{- 'User: ' -}}"
    "{%- for part in message['content'] -%}{%- if part['type'] == 'image' -%}"
    "{{ '<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>' }}{%- endif -%}{%- endfor -%}"
    "{%- for part in message['content'] -%}{%- if part['type'] == 'text' -%}{{ part['text'] }}"
    "{%- endif -%}{%- endfor -%}{{ '\n' -}}"
    "{%- elif message['role'] == 'assistant' -%}{{- 'Assistant:\n' -}}"
    "{%- for part in message['content'] -%}{%- if part['type'] == 'text' -%}{{ part['text'] }}"
    "{%- endif -%}{%- endfor -%}{{ eos_token -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'Assistant:\n' -}}{%- endif -%}"
)


# The real model's special tokens where its tokenizer has them (pad, bos, eos; the image tokens are
# PaddleOCRVLConfig's defaults).
REAL_IDS = {
    "pad": 0, "bos": 1, "eos": 2, "unk": 3,
    "image": 100295, "video": 100296, "vision_start": 101305, "vision_end": 101306,
}  # fmt: skip
REAL_PIXELS = {"shortest_edge": 147384, "longest_edge": 2822400}


def build(folder: Path, size: Literal["tiny", "real"] = "tiny") -> Path:
    """Write the model into ``folder`` (created) and return it. Takes a few seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    return _build_real(folder) if size == "real" else _build_tiny(folder)


def _build_tiny(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        PaddleOCRVLConfig,
        PaddleOCRVLForConditionalGeneration,
        PaddleOCRVLImageProcessorPil,
        PaddleOCRVLProcessor,
    )

    bpe = Tokenizer(models.BPE(unk_token=SPECIAL["unk"]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [
        "OCR: Table Recognition: Formula Recognition: Chart Recognition: <fcel> <ecel> <nl>",
        "Привет, мир. Hello world 0123456789 | - = + ( ) [ ] { } \\frac{a}{b}",
    ] * 20
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = _tokenizer(bpe)
    ids = {k: tokenizer.convert_tokens_to_ids(v) for k, v in SPECIAL.items()}

    torch.manual_seed(0)
    config = PaddleOCRVLConfig(
        vision_config={
            "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 2, "patch_size": 14, "image_size": 56, "spatial_merge_size": 2,
        },
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
            "head_dim": 32, "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 5e5, "mrope_section": [4, 6, 6]},
            "pad_token_id": ids["pad"], "bos_token_id": ids["bos"], "eos_token_id": ids["eos"],
        },
        image_token_id=ids["image"],
        video_token_id=ids["video"],
        vision_start_token_id=ids["vision_start"],
        vision_end_token_id=ids["vision_end"],
        architectures=["PaddleOCRVLForConditionalGeneration"],
    )  # fmt: skip
    model = PaddleOCRVLForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    image_processor = PaddleOCRVLImageProcessorPil(
        patch_size=14,
        merge_size=2,
        temporal_patch_size=1,
        size={"shortest_edge": 56 * 56, "longest_edge": 224 * 224},
    )
    processor = PaddleOCRVLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    )
    processor.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _tokenizer(model: Any) -> Any:
    """A fast tokenizer over ``model`` with PaddleOCR-VL's special tokens and chat template."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=model,
        bos_token=SPECIAL["bos"],
        eos_token=SPECIAL["eos"],
        unk_token=SPECIAL["unk"],
        pad_token=SPECIAL["pad"],
        extra_special_tokens={
            "image_token": SPECIAL["image"],
            "vision_start_token": SPECIAL["vision_start"],
            "vision_end_token": SPECIAL["vision_end"],
            "video_token": SPECIAL["video"],
        },
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _build_real(folder: Path) -> Path:
    """Config, processor and a tokenizer of the real vocabulary's size (its ordinary tokens are
    made-up words: the output is noise either way); no weights."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        PaddleOCRVLConfig,
        PaddleOCRVLImageProcessorPil,
        PaddleOCRVLProcessor,
    )

    vocab_size = PaddleOCRVLConfig().text_config.vocab_size
    names = {i: SPECIAL[k] for k, i in REAL_IDS.items()}
    vocab = {names.get(i, f"w{i}"): i for i in range(vocab_size)}
    words = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL["unk"]))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    words.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = _tokenizer(words)
    config = PaddleOCRVLConfig(
        # The published config's multimodal RoPE split of the 128-wide heads (temporal, h, w).
        text_config={
            "rope_parameters": {"rope_type": "default", "rope_theta": 5e5, "mrope_section": [16, 24, 24]}
        },
        image_token_id=REAL_IDS["image"],
        video_token_id=REAL_IDS["video"],
        vision_start_token_id=REAL_IDS["vision_start"],
        vision_end_token_id=REAL_IDS["vision_end"],
        architectures=["PaddleOCRVLForConditionalGeneration"],
        torch_dtype="bfloat16",
    )
    config.save_pretrained(folder)
    image_processor = PaddleOCRVLImageProcessorPil(
        patch_size=14, merge_size=2, temporal_patch_size=1, size=dict(REAL_PIXELS)
    )
    PaddleOCRVLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.random_vlm")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--size", choices=("tiny", "real"), default="tiny")
    opts = parser.parse_args()
    print(build(opts.folder, opts.size))
