"""The PP-DocLayoutV2 adapter against paddleocr's documented result shape (paddle is not installed here).

Shape source: paddlex 3.7 ``inference/models/layout_analysis/predictor.py`` ``process`` and
``processors.py`` (boxes as ``{cls_id, label, score, coordinate}`` in input pixels, list already in
reading order); the same keys in paddlex 3.3 ``object_detection/processors.py``. Label list:
paddlex ``inference_meta.py`` ``_LABEL_DOC_LAYOUT_V2V3``. Summarised in docs/research/gpu-engines.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from serve_app.config import AppArgs, PaddleLayoutArgs
from serve_app.engines import build_layout
from serve_app.engines.base import ModelLoadError
from serve_app.engines.paddle import LABEL_MAP, regions_from_result

V2_LABELS = [
    "abstract", "algorithm", "aside_text", "chart", "content", "display_formula", "doc_title",
    "figure_title", "footer", "footer_image", "footnote", "formula_number", "header", "header_image",
    "image", "inline_formula", "number", "paragraph_title", "reference", "reference_content", "seal",
    "table", "text", "vertical_text", "vision_footnote",
]  # fmt: skip

# What one LayoutDetection.predict() result looks like (3.7 adds an "order" key; 3.3 has floats).
RESULT = {
    "input_path": None,
    "page_index": None,
    "boxes": [
        {"cls_id": 6, "label": "doc_title", "score": 0.97, "coordinate": [120, 80, 1500, 140], "order": 1},
        {
            "cls_id": 22,
            "label": "text",
            "score": 0.95,
            "coordinate": [100.5, 200.0, 780.0, 900.0],
            "order": 2,
        },
        {"cls_id": 21, "label": "table", "score": 0.93, "coordinate": [820, 200, 1560, 700], "order": None},
        {"cls_id": 5, "label": "display_formula", "score": 0.88, "coordinate": [820, 720, 1500, 800]},
        {"cls_id": 3, "label": "chart", "score": 0.81, "coordinate": [820, 820, 1560, 1300]},
        {"cls_id": 14, "label": "image", "score": 0.9, "coordinate": [100, 950, 780, 1400]},
        {"cls_id": 16, "label": "number", "score": 0.7, "coordinate": [800, 2200, 840, 2230]},
    ],
}


def test_every_documented_label_is_mapped() -> None:
    assert sorted(LABEL_MAP) == sorted(V2_LABELS)


def test_boxes_keep_the_models_reading_order_and_map_to_our_labels_and_tasks() -> None:
    regions = regions_from_result(RESULT)
    assert [r.label for r in regions] == ["title", "text", "table", "equation", "chart", "figure", "footer"]
    assert [r.task for r in regions] == ["text", "text", "table", "formula", "chart", "figure", "text"]
    assert regions[1].bbox == (100.5, 200.0, 780.0, 900.0) and regions[0].score == pytest.approx(0.97)


def test_config_selects_the_engine_and_a_missing_folder_is_a_startup_error(tmp_path: Path) -> None:
    folder = tmp_path / "PP-DocLayoutV2"
    args = AppArgs.model_validate({"layout": {"engine": "paddle", "model_dir": str(folder)}})
    assert isinstance(args.layout, PaddleLayoutArgs) and args.layout.threshold[20] == 0.45
    engine = build_layout(args.layout)
    assert engine.ordered
    with pytest.raises(ModelLoadError, match=str(folder)):
        engine.start()
