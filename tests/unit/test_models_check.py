"""The GPU kit's first step: a serve config's model folders checked before anything starts."""

from __future__ import annotations

from pathlib import Path

from bench.models_check import checks, main
from serve_app.config import load_args


def vlm_config(model: Path, layout: Path, **recognizer: object) -> dict:
    return {
        "layout": {"engine": "paddle", "model_dir": str(layout)},
        "recognizer": {"engine": "vllm", "model": str(model), **recognizer},
    }


def test_complete_folders_pass_and_missing_files_are_named_with_where_to_get_them(tmp_path: Path) -> None:
    model, layout = tmp_path / "PaddleOCR-VL", tmp_path / "PaddleOCR-VL" / "PP-DocLayoutV2"
    layout.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json"):
        (model / name).write_text("{}")
    for name in ("inference.yml", "inference.json", "inference.pdiparams"):
        (layout / name).write_text("x")
    found = checks(load_args(vlm_config(model, layout), environ={}))
    assert [c.what for c in found] == ["layout", "recognizer"] and all(c.ok for c in found)
    assert found[1].size_bytes > 0

    (model / "model.safetensors").unlink()
    (layout / "inference.pdiparams").unlink()
    layout_check, vlm = checks(load_args(vlm_config(model, layout), environ={}))
    assert vlm.missing == [str(model / "*.safetensors")] and "PaddlePaddle/PaddleOCR-VL" in str(vlm.fetch)
    assert layout_check.missing == [str(layout / "inference.pdiparams")]
    # Random weights of the model's shape need no weight files.
    _, dummy = checks(load_args(vlm_config(model, layout, load_format="dummy"), environ={}))
    assert dummy.ok


def test_a_dots_ocr_folder_with_dots_in_its_name_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "dots.ocr"
    model.mkdir()
    config = {"recognizer": {"engine": "vllm", "model": str(model), "profile": "dots.ocr"}}
    (check,) = checks(load_args(config, environ={}))
    assert any("no dots" in m for m in check.missing) and "rednote-hilab/dots.ocr" in str(check.fetch)


def test_the_cpu_config_is_in_place_here_and_the_command_says_so() -> None:
    root = Path(__file__).parents[2]
    assert main([str(root / "serve_config.cpu.yaml")]) == 0
    assert main([str(root / "serve_config.yaml")]) == 1  # no /models on this machine
