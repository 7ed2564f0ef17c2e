"""PaddleX's serving protocol for the PaddleOCR-VL pipeline (``POST /layout-parsing``), so that a
client written for ``paddlex --serve --pipeline PaddleOCR-VL`` works against us unchanged.

The request and answer follow ``paddlex/inference/serving/schemas/paddleocr_vl.py`` (PaddleX 3.7.0:
``InferRequest``, ``InferResult``, ``LayoutParsingResult``), with the envelope of
``infra/models.py`` (``logId``, ``errorCode`` 0, ``errorMsg`` "Success", ``result``) and a page's
``prunedResult`` as ``pipelines/paddleocr_vl/result.py`` writes it (``parsing_res_list`` of
``block_label``, ``block_content``, ``block_bbox``, ``block_id``, ``block_order``, ``group_id``;
``layout_det_res.boxes``). Options we do not implement are refused with a 400 that names them,
never silently ignored; PaddleX's defaults for them are accepted. Errors carry PaddleX's
``logId``/``errorCode``/``errorMsg`` beside our problem+json fields.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .assemble import NOT_IN_MARKDOWN
from .bodies import DocumentSource
from .errors import BadRequest
from .pipeline import Options

ENDPOINT = "/layout-parsing"

# Our labels (the CDLA set) as PP-DocLayoutV2 names them; engines/paddle.py maps the other way.
PADDLEX_LABELS = {
    "text": "text", "title": "paragraph_title", "figure": "image", "figure_caption": "figure_title",
    "table": "table", "table_caption": "figure_title", "header": "header", "footer": "footer",
    "reference": "reference", "equation": "display_formula", "chart": "chart",
}  # fmt: skip
# PaddleOCR-VL gives these no place in the reading order (block_order null): SKIP_ORDER_LABELS of
# pipelines/paddleocr_vl/result.py.
UNORDERED = {"figure_title", "image", "chart", "table", "header", "footer"}


class LayoutParsingRequest(BaseModel):
    """PaddleX 3.7.0's ``paddleocr_vl.InferRequest``: every field, typed loosely where we only check
    that it is left at its default. Unknown fields are a 400 (PaddleX would drop them)."""

    model_config = ConfigDict(extra="forbid")

    file: str = Field(description="the document: an http(s) URL or base64")
    fileType: Literal[0, 1] | None = Field(None, description="0 PDF, 1 image; sniffed when null")
    useLayoutDetection: bool | None = Field(None, description="false: each page is one region")
    returnMarkdownImages: bool = True
    logId: str | None = None
    # Accepted at these values only: what this service does (no preprocessing, no visualisation,
    # its own layout thresholds and sampling, no restructuring across pages).
    useDocOrientationClassify: Any = None
    useDocUnwarping: Any = None
    useChartRecognition: Any = None
    useSealRecognition: Any = None
    useOcrForImageBlock: Any = None
    layoutThreshold: Any = None
    layoutNms: Any = None
    layoutUnclipRatio: Any = None
    layoutMergeBboxesMode: Any = None
    layoutShapeMode: Any = "auto"
    promptLabel: Any = None
    formatBlockContent: Any = None
    repetitionPenalty: Any = None
    temperature: Any = None
    topP: Any = None
    minPixels: Any = None
    maxPixels: Any = None
    maxNewTokens: Any = None
    mergeLayoutBlocks: Any = None
    markdownIgnoreLabels: Any = None
    vlmExtraArgs: Any = None
    prettifyMarkdown: Any = True
    showFormulaNumber: Any = False
    restructurePages: Any = False
    mergeTables: Any = True  # only read with restructurePages
    relevelTitles: Any = True  # only read with restructurePages
    visualize: Any = None
    outputFormats: Any = None

    def checked(self) -> tuple[DocumentSource, Options]:
        """Where the document is and how to read it; a 400 naming every option we do not do."""
        unsupported = [
            f"{name}={getattr(self, name)!r}"
            for name, field in type(self).model_fields.items()
            if field.annotation is Any
            and name not in ("mergeTables", "relevelTitles")
            and not _left_at(getattr(self, name), field.default)
        ]
        if unsupported:
            raise BadRequest("not supported by this service: " + ", ".join(unsupported) + " (leave them out)")
        url = self.file.startswith(("http://", "https://"))
        # PaddleX decodes base64 leniently: the line breaks of `base64` and encodebytes are fine.
        source = DocumentSource(url=self.file) if url else DocumentSource(file="".join(self.file.split()))
        return source, Options(layout=self.useLayoutDetection is not False)


class MarkdownOut(BaseModel):
    text: str
    images: dict[str, str] | None = None


class LayoutParsingResultOut(BaseModel):
    prunedResult: dict[str, Any]
    markdown: MarkdownOut
    outputImages: dict[str, str] | None = None
    inputImage: str | None = None


class InferResultOut(BaseModel):
    layoutParsingResults: list[LayoutParsingResultOut]
    dataInfo: dict[str, Any]


class LayoutParsingAnswer(BaseModel):
    """PaddleX's ``AIStudioResultResponse[InferResult]`` (for OpenAPI; tests check real answers
    against PaddleX's own models)."""

    model_config = ConfigDict(extra="forbid")

    logId: str
    errorCode: Literal[0]
    errorMsg: Literal["Success"]
    result: InferResultOut


def _left_at(value: Any, default: Any) -> bool:
    """``value`` asks for nothing beyond ``default``: it is the default, or a feature that is off
    by default is turned off (false) or given nothing (an empty list)."""
    if default is None:  # markdownIgnoreLabels: [] asks for headers and footers: not "off"
        return value is None or value is False
    return bool(value == default and type(value) is type(default))


def check_file_type(file_type: Literal[0, 1] | None, media_type: str) -> None:
    if file_type is None:
        return
    is_pdf = media_type == "application/pdf"
    if is_pdf != (file_type == 0):
        said = "a PDF (fileType 0)" if file_type == 0 else "an image (fileType 1)"
        raise BadRequest(f"fileType says {said}, but the file is {media_type}")


def _int_box(bbox: list[float]) -> list[int]:
    return [round(v) for v in bbox]


def pruned_result(page: dict[str, Any], page_count: int, layout: bool) -> dict[str, Any]:
    """One page of our answer as PaddleOCR-VL's ``prunedResult``."""
    blocks, order = [], 1
    for i, block in enumerate(page["blocks"]):
        label = PADDLEX_LABELS.get(block["label"], "text")
        blocks.append({
            "block_label": label,
            "block_content": block["text"],
            "block_bbox": _int_box(block["bbox"]),
            "block_id": i,
            "block_order": None if label in UNORDERED else order,
            "group_id": i,
        })  # fmt: skip
        order += label not in UNORDERED
    settings = {
        "use_doc_preprocessor": False,
        "use_layout_detection": layout,
        "use_chart_recognition": False,
        "use_seal_recognition": False,
        "use_ocr_for_image_block": False,
        "format_block_content": False,
        "merge_layout_blocks": False,
        "markdown_ignore_labels": sorted(NOT_IN_MARKDOWN),
    }
    result: dict[str, Any] = {
        "page_count": page_count,
        "width": page["width"],
        "height": page["height"],
        "model_settings": settings,
        "parsing_res_list": blocks,
    }
    if layout:
        boxes = [
            {
                "cls_id": i,
                "label": b["block_label"],
                "score": round(block["score"], 4),
                "coordinate": block["bbox"],
            }
            for i, (b, block) in enumerate(zip(blocks, page["blocks"], strict=True))
        ]
        result["layout_det_res"] = {"boxes": boxes}
    return result


def data_info(body: dict[str, Any]) -> dict[str, Any]:
    """PaddleX's ``DataInfo``: an image's size, or a PDF's (a TIFF's) page count and page sizes."""
    pages = [{"width": p["width"], "height": p["height"]} for p in body["pages"]]
    document = body["document"]
    kind = {"application/pdf": "pdf", "image/tiff": "tiff"}.get(document["media_type"], "image")
    if kind == "image" or (kind == "tiff" and document["page_count"] == 1):
        return {**pages[0], "type": "image"}
    return {"numPages": document["page_count"], "pages": pages, "type": kind}


def infer_response(body: dict[str, Any], request: LayoutParsingRequest, log_id: str) -> dict[str, Any]:
    """Our ``/v1/ocr`` answer in PaddleX's envelope and ``InferResult``."""
    layout = request.useLayoutDetection is not False
    page_count = body["document"]["page_count"]
    # PaddleX leaves out what is null, and its client iterates outputImages: an empty dict.
    markdown_images: dict[str, Any] = {"images": {}} if request.returnMarkdownImages else {}
    results = [
        {
            "prunedResult": pruned_result(page, page_count, layout),
            "markdown": {"text": page["markdown"], **markdown_images},
            "outputImages": {},
        }
        for page in body["pages"]
    ]
    result = {"layoutParsingResults": results, "dataInfo": data_info(body)}
    return {"logId": log_id, "errorCode": 0, "errorMsg": "Success", "result": result}


def error_fields(log_id: str, status: int, detail: str) -> dict[str, Any]:
    """PaddleX's ``AIStudioNoResultResponse``, added to a problem+json body."""
    return {"logId": log_id, "errorCode": status, "errorMsg": detail}
