"""Are the models a serve config names in place? Checked before anything starts (the GPU kit's first
step), on the machine that will serve: folders, the files each engine loads, their sizes; for what
is missing, the command to fetch it on a machine with internet access.

    python -m bench.models_check [serve_config.yaml]

Exit status 0 when every model is in place, 1 otherwise (a line per missing file).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.systems import config_args
from serve_app.config import (
    AppArgs,
    CpuRecognizerArgs,
    PaddleLayoutArgs,
    RapidLayoutArgs,
    VllmRecognizerArgs,
)

ROOT = Path(__file__).parents[1]
# Where each profile's weights are published (docs/gpu.md, section 2).
HUB = {
    "paddleocr-vl": "PaddlePaddle/PaddleOCR-VL",
    "dots.ocr": "rednote-hilab/dots.ocr",
    "qwen-vl": "Qwen/Qwen2.5-VL-7B-Instruct",
}


@dataclass
class Check:
    what: str  # "recognizer", "layout"
    path: Path
    missing: list[str] = field(default_factory=list)
    size_bytes: int = 0
    fetch: str | None = None  # how to get it, where it is missing

    @property
    def ok(self) -> bool:
        return not self.missing


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _need(check: Check, folder: Path, *alternatives: str) -> None:
    """One of ``alternatives`` (glob patterns) must exist in ``folder``."""
    if not any(any(folder.glob(a)) for a in alternatives):
        check.missing.append(" or ".join(str(folder / a) for a in alternatives))


def vllm_check(rec: VllmRecognizerArgs) -> Check:
    check = Check("recognizer", rec.model)
    _need(check, rec.model, "config.json")
    if rec.load_format != "dummy":
        _need(check, rec.model, "*.safetensors")
    _need(check, rec.model, "tokenizer.json", "tokenizer.model")
    _need(check, rec.model, "preprocessor_config.json", "processor_config.json")
    if rec.profile == "dots.ocr" and "." in rec.model.name:
        check.missing.append(f"{rec.model}: dots.ocr's folder name must contain no dots (vLLM imports it)")
    if check.missing:
        name = rec.model.name
        check.fetch = (
            f"huggingface-cli download {HUB[rec.profile]} --local-dir {name}  # then copy to {rec.model}"
        )
    check.size_bytes = _size(rec.model)
    return check


def paddle_layout_check(layout: PaddleLayoutArgs) -> Check:
    check = Check("layout", layout.model_dir)
    _need(check, layout.model_dir, "inference.yml")
    _need(check, layout.model_dir, "inference.json", "inference.pdmodel")
    _need(check, layout.model_dir, "inference.pdiparams")
    if check.missing:
        check.fetch = (
            f"huggingface-cli download PaddlePaddle/PaddleOCR-VL --local-dir PaddleOCR-VL  "
            f"# its PP-DocLayoutV2 folder, copied to {layout.model_dir}"
        )
    check.size_bytes = _size(layout.model_dir)
    return check


def checks(args: AppArgs) -> list[Check]:
    out = []
    if args.uses_layout:
        if isinstance(args.layout, PaddleLayoutArgs):
            out.append(paddle_layout_check(args.layout))
        elif isinstance(args.layout, RapidLayoutArgs) and args.layout.model_path is not None:
            check = Check("layout", args.layout.model_path, size_bytes=_size(args.layout.model_path))
            if not args.layout.model_path.is_file():
                check.missing.append(str(args.layout.model_path))
            out.append(check)
    rec = args.recognizer
    if isinstance(rec, VllmRecognizerArgs):
        out.append(vllm_check(rec))
    elif isinstance(rec, CpuRecognizerArgs):
        check = Check("recognizer", rec.tessdata_dir)
        for lang in ("eng", "rus"):
            _need(check, rec.tessdata_dir, f"{lang}.traineddata")
        if check.missing:
            check.fetch = "apt-get install tesseract-ocr-eng tesseract-ocr-rus"
        check.size_bytes = _size(rec.tessdata_dir)
        out.append(check)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", type=Path, default=ROOT / "serve_config.yaml")
    opts = parser.parse_args(argv)
    found = checks(config_args(opts.config))
    for c in found:
        state = "ok" if c.ok else "MISSING"
        print(f"{c.what:<10} {state:<8} {c.path}  ({c.size_bytes / 2**30:.2f} GiB)")
        for m in c.missing:
            print(f"           missing: {m}")
        if c.fetch:
            print(f"           fetch:   {c.fetch}")
    return 0 if all(c.ok for c in found) else 1


if __name__ == "__main__":
    sys.exit(main())
