"""The GPU kit's pure parts: the random model of the published size, and the config it starts.
(The whole kit runs on CPU before the tests: scripts/test.sh, ``bench.gpu_check --dry-run``.)"""

from __future__ import annotations

from pathlib import Path

import yaml

from bench.gpu_check import kit_config, parse
from bench.random_vlm import REAL_IDS, build
from serve_app.config import load_args


def test_the_random_model_has_the_published_size_and_special_tokens(tmp_path: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoProcessor, PaddleOCRVLForConditionalGeneration

    folder = build(tmp_path / "real", "real")
    assert not list(folder.glob("*.safetensors"))  # vLLM's load_format: dummy gives the weights
    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):  # the shapes, not the memory
        params = sum(p.numel() for p in PaddleOCRVLForConditionalGeneration(config).parameters())
    assert 0.75e9 < params < 1.0e9, params  # "PaddleOCR-VL-0.9B" (tied embeddings counted once)
    processor = AutoProcessor.from_pretrained(folder)
    assert len(processor.tokenizer) == config.text_config.vocab_size == 103424
    tokenizer = processor.tokenizer
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "OCR:"}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert ids[0] == REAL_IDS["bos"] and REAL_IDS["image"] in ids and REAL_IDS["vision_end"] in ids


def test_the_kit_starts_the_config_with_its_model_cut_answers_and_room_for_every_client(
    tmp_path: Path,
) -> None:
    opts = parse(["--out", str(tmp_path), "--output-tokens", "1000"])
    config = kit_config(opts, {"folder": str(tmp_path / "model")})
    args = config["applications"][0]["args"]
    recognizer = args["recognizer"]
    assert recognizer["load_format"] == "dummy" and recognizer["model"] == str(tmp_path / "model")
    assert set(recognizer["sampling"]["max_tokens"].values()) == {1000}
    assert recognizer["sampling"]["retry_temperatures"] == []  # a cut answer is not read again
    assert args["ingress"]["max_documents"] >= 128  # the last step's clients are not refused
    # PP-DocLayoutV2's folder is not on this machine: the CPU layout stands in.
    assert args["layout"]["engine"] == "rapid_layout"
    original = yaml.safe_load(Path("serve_config.yaml").read_text())["applications"][0]["args"]
    assert recognizer["gpu_budget_gb"] == original["recognizer"]["gpu_budget_gb"]
    load_args(args, environ={})  # the app accepts it


def test_the_kit_stops_at_the_first_failing_step_and_says_why(tmp_path: Path, capsys) -> None:
    import json

    from bench.gpu_check import main

    missing = tmp_path / "PaddleOCR-VL"  # no weights there: the kit stops before starting anything
    assert main(["--dry-run", "--model", str(missing), "--out", str(tmp_path / "out")]) == 1
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["failed"]["step"] == "model" and str(missing) in results["failed"]["error"]
    assert list(results["steps"]) == ["versions"]  # done before it; nothing after
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "FAILED at step `model`" in summary and "fetch:" in summary
