"""PP-DocLayoutV2 (or V3) layout through paddleocr's ``LayoutDetection``; paddle is imported in ``start``.

The model's boxes come back in reading order (its pointer head sorts them; paddlex
``layout_analysis/processors.py``), each ``{cls_id, label, score, coordinate: [x1, y1, x2, y2]}`` in
input-image pixels. See docs/research/gpu-engines.md for the sources.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..config import PaddleLayoutArgs
from ..datatypes import Region
from .base import LayoutEngine, ModelInfo, ModelLoadError, one_start_at_a_time, require_file

# PP-DocLayoutV2/V3's 25 labels -> ours. The PaddleOCR-VL pipeline reads everything with "OCR:" but
# tables, formulas (not formula numbers) and charts, and skips pictures; our labels carry that.
LABEL_MAP = {
    "abstract": "text", "algorithm": "text", "aside_text": "text", "chart": "chart", "content": "text",
    "display_formula": "equation", "doc_title": "title", "figure_title": "figure_caption",
    "footer": "footer", "footer_image": "figure", "footnote": "footer", "formula_number": "text",
    "header": "header", "header_image": "figure", "image": "figure", "inline_formula": "equation",
    "number": "footer", "paragraph_title": "title", "reference": "reference",
    "reference_content": "reference", "seal": "figure", "table": "table", "text": "text",
    "vertical_text": "text", "vision_footnote": "footer",
}  # fmt: skip
WARM_UP_PX = 800  # a blank page predicted once at start: the first predict's allocations happen then


def regions_from_result(result: Any) -> list[Region]:
    """One ``LayoutDetection.predict`` result (a dict-like with ``boxes``) -> regions, list order kept."""
    regions = []
    for box in result["boxes"]:
        x0, y0, x1, y1 = (float(v) for v in box["coordinate"])
        label = LABEL_MAP.get(str(box["label"]), "text")
        # PP-DocLayoutV3 outlines each region too (its instance masks); V2 gives boxes only.
        polygon = tuple((float(x), float(y)) for x, y in box.get("polygon_points") or ())
        regions.append(Region(bbox=(x0, y0, x1, y1), label=label, score=float(box["score"]), polygon=polygon))
    return regions


class PaddleLayoutEngine(LayoutEngine):
    ordered = True

    def __init__(self, args: PaddleLayoutArgs) -> None:
        self._args = args
        self._model: Any = None
        self._lock = threading.Lock()

    def start(self) -> None:
        model_dir = self._args.model_dir
        require_file(model_dir / "inference.yml", f"{self._args.model_name} layout")
        # Local folder only: no model-source probing, no download.
        os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
        # Read by paddle when it is imported: grow GPU memory on demand instead of reserving most of
        # the card, and never past this deployment's budget (the rest of the card is vLLM's).
        os.environ.setdefault("FLAGS_allocator_strategy", "auto_growth")
        if self._args.gpu_budget_gb is not None:
            os.environ.setdefault("FLAGS_gpu_memory_limit_mb", str(int(self._args.gpu_budget_gb * 1024)))
        try:
            from paddleocr import LayoutDetection
        except ImportError as exc:
            raise ModelLoadError("paddleocr is not installed (pip install '.[gpu]')") from exc
        # One engine start at a time on a machine, the warm-up included: vLLM sizes its KV cache
        # from the memory free while it profiles, and paddle's first predict allocates.
        with one_start_at_a_time():
            try:
                model = LayoutDetection(
                    model_name=self._args.model_name,
                    model_dir=str(model_dir),
                    device=self._args.device,
                    threshold=dict(self._args.threshold),
                    layout_nms=self._args.layout_nms,
                    layout_unclip_ratio=tuple(self._args.layout_unclip_ratio),
                    layout_merge_bboxes_mode=dict(self._args.layout_merge_bboxes_mode),
                )
                list(model.predict([np.full((WARM_UP_PX, WARM_UP_PX, 3), 255, np.uint8)], batch_size=1))
            except Exception as exc:
                raise ModelLoadError(f"layout model at {model_dir} cannot be loaded: {exc}") from exc
        self._model = model

    def check_health(self) -> None:
        if self._model is None:
            raise RuntimeError("layout model is not loaded")

    async def detect(self, images: Sequence[np.ndarray]) -> list[list[Region]]:
        self.check_health()
        # paddlex reads ndarrays as BGR (cv2 order); ours are RGB.
        bgr = [np.ascontiguousarray(image[:, :, ::-1]) for image in images]

        def run() -> list[list[Region]]:
            with self._lock:
                results = self._model.predict(bgr, batch_size=self._args.batch_size)
            return [regions_from_result(r) for r in results]

        return await asyncio.to_thread(run)

    def info(self) -> ModelInfo:
        return ModelInfo(
            "layout", f"paddle:{self._args.model_name}", {"path": str(self._args.model_dir), "ordered": True}
        )
