"""The PP-DocLayoutV2 adapter against paddleocr's documented result shape (paddle is not installed here).

Shape source: paddlex 3.7 ``inference/models/layout_analysis/predictor.py`` ``process`` and
``processors.py`` (boxes as ``{cls_id, label, score, coordinate}`` in input pixels, list already in
reading order); the same keys in paddlex 3.3 ``object_detection/processors.py``. Label list:
paddlex ``inference_meta.py`` ``_LABEL_DOC_LAYOUT_V2V3``. Summarised in docs/research/gpu-engines.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

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


class _LayoutDetection:
    """paddleocr's ``LayoutDetection`` as far as ``start`` uses it (paddle cannot run here): the
    keyword-only init of ``paddleocr/_models/_object_detection.py`` (3.x) and ``predict``."""

    made: ClassVar[list[_LayoutDetection]] = []

    def __init__(
        self, *, img_size=None, threshold=None, layout_nms=None, layout_unclip_ratio=None,
        layout_merge_bboxes_mode=None, model_name=None, model_dir=None, device=None, **kwargs,
    ) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
        self.init = {
            "threshold": threshold, "layout_nms": layout_nms, "layout_unclip_ratio": layout_unclip_ratio,
            "layout_merge_bboxes_mode": layout_merge_bboxes_mode, "model_name": model_name,
        }  # fmt: skip
        self.warmed_under_the_start_lock: bool | None = None
        _LayoutDetection.made.append(self)

    def predict(self, images, batch_size=1):  # type: ignore[no-untyped-def]
        import fcntl
        import tempfile

        lock = Path(tempfile.gettempdir()) / "serve_app-engine-start.lock"
        with lock.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
                self.warmed_under_the_start_lock = False
            except BlockingIOError:
                self.warmed_under_the_start_lock = True
        return [{"boxes": []} for _ in images]


def test_start_passes_the_pipelines_box_options_and_warms_up_under_the_start_lock(
    tmp_path: Path, monkeypatch
) -> None:
    import sys
    import types

    folder = tmp_path / "PP-DocLayoutV2"
    folder.mkdir()
    (folder / "inference.yml").write_text("Global:\n  model_name: PP-DocLayoutV2\n")
    monkeypatch.setitem(sys.modules, "paddleocr", types.SimpleNamespace(LayoutDetection=_LayoutDetection))
    engine = build_layout(PaddleLayoutArgs(engine="paddle", model_dir=folder, device="cpu"))
    engine.start()
    model = _LayoutDetection.made[-1]
    assert model.init["layout_unclip_ratio"] == (1.0, 1.0)
    modes = model.init["layout_merge_bboxes_mode"]
    assert modes[6] == "large" and modes[22] == "union" and len(modes) == 25  # doc_title, text
    assert model.init["threshold"][22] == 0.4 and model.init["layout_nms"] is True
    assert model.warmed_under_the_start_lock is True
    engine.check_health()


def test_a_v3_outline_keeps_only_the_ink_inside_it() -> None:
    """PP-DocLayoutV3 boxes carry ``polygon_points`` ([x, y] in input pixels; paddlex
    ``layout_analysis/result.py`` draws them as masks, PaddlePaddle/PaddleX @ 0399d84)."""
    import numpy as np

    from serve_app.crops import CROP_BORDER_PX, CROP_MARGIN_PX, crop

    box = {"cls_id": 22, "label": "text", "score": 0.9, "coordinate": [10, 10, 190, 190]}
    ell = [[10, 10], [190, 10], [190, 60], [60, 60], [60, 190], [10, 190]]  # round a picture
    (v3,) = regions_from_result({"boxes": [{**box, "polygon_points": ell}]})
    (v2,) = regions_from_result({"boxes": [box]})
    assert v3.polygon == tuple((float(x), float(y)) for x, y in ell) and v2.polygon == ()
    page = np.full((200, 200, 3), 255, np.uint8)
    page[20:40, 20:40] = 0  # in the L
    page[150:170, 150:170] = 0  # in the box, outside the L: the picture's corner
    b = CROP_BORDER_PX - (10 - CROP_MARGIN_PX)  # page pixels -> the crop's (from its margin, bordered)
    pixels, _ = crop(page, v3)
    assert pixels[20 + b : 40 + b, 20 + b : 40 + b].max() == 0
    assert pixels[150 + b : 170 + b, 150 + b : 170 + b].min() == 255
    pixels, _ = crop(page, v2)
    assert pixels[150 + b : 170 + b, 150 + b : 170 + b].max() == 0
