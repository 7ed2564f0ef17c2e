"""``POST /layout-parsing`` against PaddleX's own models: the request and answer classes of
``paddlex/inference/serving/schemas/paddleocr_vl.py`` and ``infra/models.py``, read from the PaddleX
3.7.0 wheel that scripts/setup.sh downloads (not vendored, not installed), over the real API and
engines. A field PaddleX adds or renames, or an answer its client could not parse, fails here."""

from __future__ import annotations

import base64
import importlib
import sys
import zipfile
from collections.abc import Iterator
from types import ModuleType

import pytest
from fastapi.testclient import TestClient

from bench.textmetrics import cer
from serve_app.api import create_api
from serve_app.paddlex import LayoutParsingAnswer, LayoutParsingRequest
from tests.conftest import DATA
from tests.serve_fixtures import ROOT
from tests.unit.engines_fixture import EngineBackend

WHEEL = ROOT / ".cache" / "wheels" / "paddlex-3.7.0-py3-none-any.whl"
SCHEMA_FILES = (
    "inference/serving/infra/models.py",
    "inference/serving/schemas/shared/ocr.py",
    "inference/serving/schemas/shared/export.py",
    "inference/serving/schemas/paddleocr_vl.py",
)
PHOTOTEST = base64.b64encode((DATA / "phototest.png").read_bytes()).decode()
PHOTOTEST_TRUTH = (DATA / "phototest.gt.txt").read_text()
PDF = base64.b64encode((DATA / "draft_federal_law_personal_data_p1.pdf").read_bytes()).decode()


@pytest.fixture(scope="module")
def paddlex(tmp_path_factory) -> Iterator[tuple[ModuleType, ModuleType]]:
    """PaddleX's ``schemas.paddleocr_vl`` and ``infra.models``, as files of its wheel under a package
    of their own (its ``utils.deps`` stubbed: only an optional ``openai`` import asks it)."""
    assert WHEEL.exists(), f"{WHEEL} is missing: scripts/setup.sh cpu,test downloads it"
    root = tmp_path_factory.mktemp("paddlex") / "paddlex_schema"
    with zipfile.ZipFile(WHEEL) as wheel:
        for name in SCHEMA_FILES:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(wheel.read(f"paddlex/{name}"))
    (root / "utils").mkdir()
    (root / "utils" / "deps.py").write_text("def is_dep_available(name):\n    return False\n")
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    sys.path.insert(0, str(root.parent))
    try:
        schema = importlib.import_module("paddlex_schema.inference.serving.schemas.paddleocr_vl")
        yield schema, importlib.import_module("paddlex_schema.inference.serving.infra.models")
    finally:
        sys.path.remove(str(root.parent))
        for name in [m for m in sys.modules if m.startswith("paddlex_schema")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def client(engines) -> TestClient:
    from serve_app.config import load_args

    return TestClient(create_api(load_args({}, environ={}), EngineBackend(*engines)))


def test_we_take_every_field_of_paddlexs_request_with_its_defaults(paddlex) -> None:
    schema, _ = paddlex
    theirs, ours = schema.InferRequest.model_fields, LayoutParsingRequest.model_fields
    assert set(ours) == set(theirs)
    assert {k: ours[k].default for k in theirs} == {k: theirs[k].default for k in theirs}
    # What a PaddleX client sends, we parse, and the other way round.
    asked = {"file": PHOTOTEST, "fileType": 1, "useLayoutDetection": True, "logId": "abc"}
    assert LayoutParsingRequest.model_validate(asked).model_dump() == {
        k: v for k, v in schema.InferRequest.model_validate(asked).model_dump().items() if k in ours
    }


def test_an_image_answers_as_paddlexs_client_reads_it(client, paddlex) -> None:
    schema, models = paddlex
    wrapped = base64.encodebytes(
        (DATA / "phototest.png").read_bytes()
    ).decode()  # lines of 76, as PaddleX takes
    r = client.post("/layout-parsing", json={"file": wrapped, "fileType": 1, "logId": "my-log"})
    assert r.status_code == 200, r.text
    answer = r.json()
    models.AIStudioResultResponse[schema.InferResult].model_validate(answer)  # PaddleX's own classes
    LayoutParsingAnswer.model_validate(answer)  # what our OpenAPI says
    assert answer["logId"] == "my-log" and answer["errorCode"] == 0 and answer["errorMsg"] == "Success"
    (page,) = answer["result"]["layoutParsingResults"]
    assert page["outputImages"] == {} and "inputImage" not in page  # PaddleX's client iterates the one
    assert cer(page["markdown"]["text"], PHOTOTEST_TRUTH) < 0.05
    assert answer["result"]["dataInfo"] == {"width": 640, "height": 480, "type": "image"}
    pruned = page["prunedResult"]
    assert pruned["width"] == 640 and pruned["model_settings"]["use_layout_detection"] is True
    blocks = pruned["parsing_res_list"]
    assert [b["block_order"] for b in blocks] == list(range(1, len(blocks) + 1))
    assert all(len(b["block_bbox"]) == 4 and all(isinstance(v, int) for v in b["block_bbox"]) for b in blocks)
    assert len(pruned["layout_det_res"]["boxes"]) == len(blocks)


def test_a_pdf_without_layout(client, paddlex) -> None:
    schema, models = paddlex
    r = client.post("/layout-parsing", json={"file": PDF, "fileType": 0, "useLayoutDetection": False})
    assert r.status_code == 200, r.text
    answer = r.json()
    models.AIStudioResultResponse[schema.InferResult].model_validate(answer)
    info = answer["result"]["dataInfo"]
    assert info["type"] == "pdf" and info["numPages"] == 1 and len(info["pages"]) == 1
    pruned = answer["result"]["layoutParsingResults"][0]["prunedResult"]
    assert len(pruned["parsing_res_list"]) == 1 and "layout_det_res" not in pruned
    assert "Федерального закона" in answer["result"]["layoutParsingResults"][0]["markdown"]["text"]


def assert_paddlex_error(r, status: int, *named: str, log_id: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["errorCode"] == status and body["logId"] == (log_id or body["request_id"])
    assert body["errorMsg"] == body["detail"] and all(n in body["detail"] for n in named), body
    return body


def test_what_we_do_not_do_is_a_400_that_names_it(client) -> None:
    asked = {"file": PHOTOTEST, "temperature": 0, "visualize": True, "restructurePages": True}
    assert_paddlex_error(client.post("/layout-parsing", json=asked), 400, "temperature=0", "visualize=True",
                         "restructurePages=True")  # fmt: skip
    # PaddleX's defaults, and features it has off turned off, are what we do.
    off = {"file": PHOTOTEST, "useDocUnwarping": False, "prettifyMarkdown": True}
    assert client.post("/layout-parsing", json=off).status_code == 200
    # An empty list asks for headers and footers in the Markdown: not what we do.
    assert_paddlex_error(client.post("/layout-parsing", json={**off, "markdownIgnoreLabels": []}), 400,
                         "markdownIgnoreLabels=[]")  # fmt: skip
    assert_paddlex_error(client.post("/layout-parsing", json={"file": PHOTOTEST, "pages": "1"}), 400, "pages")


def test_bad_files_are_paddlex_errors_too(client) -> None:
    assert_paddlex_error(client.post("/layout-parsing", json={"file": PHOTOTEST, "fileType": 0}), 400, "PDF")
    text = base64.b64encode(b"just text").decode()
    assert_paddlex_error(client.post("/layout-parsing", json={"file": text, "logId": "x1"}), 415, log_id="x1")
    assert_paddlex_error(client.post("/layout-parsing", json={"file": "not base64!"}), 400, "base64")
    internal = {"file": "http://169.254.169.254/latest/meta-data"}
    assert_paddlex_error(client.post("/layout-parsing", json=internal), 400)
    assert_paddlex_error(client.post("/layout-parsing", content=b"file=x"), 415)
